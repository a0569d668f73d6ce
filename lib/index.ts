// The public library API of weak2strong. Native-backed pieces (models, sampling, scoring) come from
// model.ts; the method's pure data layer from data/ and pipeline/.
export { loadModel, Model, LoraAdapter, checkGgufFile, type LoadModelOptions, type ModelInfo, type ChatMessage } from './model.js';
export { SAMPLE_DEFAULTS, type SampleOptions, type Sample, type AdapterUse } from './sample-options.js';
export { cpuF16Step, windowFill, type AttentionChoice, type AttentionJob, type AttentionOption } from './model/attention.js';
export type { ScoreItem, ScoreOptions, ScoreResult } from './score-options.js';
export { addonLocation, installedVariants, type AddonLocation, type NativeDevice } from './native.js';
export { parseGpu, type AddonVariant, type GpuOption } from './gpu.js';
export { defaultThreads, physicalCores } from './threads.js';
export * from './errors.js';

export { createModel, type CreateModelOptions, type ModelArch, type ModelTensorType, type ModelInfo as CreatedModelInfo } from './model/create.js';
export { readGgufMetadata, GgufFormatError, type GgufMetadata } from './gguf/reader.js';
export { checkGgufMetadata, type GgufPurpose } from './model/check.js';
export { writeGguf } from './gguf/writer.js';
export { trainSft, type SftOptions } from './train/sft.js';
export { trainDpo, trainOrpo, type DpoOptions, type OrpoOptions } from './train/preference.js';
export { ALL_LORA_TARGETS, LORA_TARGETS, type TrainOptions, type TrainProgress, type LoraTarget } from './train/options.js';
export type { TrainResult, StepRecord } from './train/loop.js';
export { formatMemoryPlan, type MemoryPlan } from './train/memory-plan.js';
export { readConfig, parseConfig, type RunConfig } from './pipeline/run/config.js';
export { runMethod, type RunResult } from './pipeline/run/method.js';
export { writeLoraAdapter, type LoraAdapterFile, type LoraTensorPair } from './lora/adapter-file.js';

export * from './data/answer.js';
export * from './data/datasets.js';
export * from './data/formats.js';
export { chatPrompt, chatSftRow, type ChatOptions } from './data/chat.js';
export { DataFormatError } from './data/errors.js';
export { selectConsistent, type Generation, type SelectOptions, type Selection, type SelectionStats } from './pipeline/select.js';
export { majorityVote } from './pipeline/vote.js';
export { buildPairs, pairQuestion, GSM8K_PAIR_OPTIONS, MATH_PAIR_OPTIONS, type PairOptions, type PairStats, type PairKind } from './pipeline/pairs.js';
export { greedyAccuracy, passAtK, majAtK, pgr } from './pipeline/metrics.js';
export { runDemo, type DemoOptions, type DemoResult } from './world/demo.js';
export { WORLD_PRESETS, type WorldSpec, type WorldModelSpec } from './world/presets.js';
export { generateProblems, generateSplits, type WorldProblem, type ProblemOptions, type WorldSplits } from './world/problems.js';
export { collectReport, renderHtml, writeReport, type Report } from './report/report.js';

export { LocalGenerator, type Generator, type GenerationOptions, type GenerationProgress, type GeneratedSample, type LocalGeneratorOptions } from './generate/generator.js';
export { sampleResumable, generationIdentity, type ResumableOptions, type ResumableResult } from './generate/resumable.js';
export { RemoteGenerator, normalizeEndpoint, REMOTE_DEFAULTS, type RemoteGeneratorOptions, type RemoteServerInfo, type RemoteEngine } from './remote/openai.js';
export { RemoteAuthError, RemoteModelNotFoundError, RemoteRequestError, RemoteUnavailableError, PartialResultsError } from './remote/errors.js';
export { SampleJournal, type SampleRow } from './remote/journal.js';
export { requestSeed } from './remote/seed.js';
export { startLlamaServer, listLoraAdapters, setLoraAdapters, LlamaServerError, type LlamaServer, type LlamaServerOptions } from './remote/llama-server.js';
export { exportPeft, importPeft, type PeftExportOptions } from './lora/peft.js';
