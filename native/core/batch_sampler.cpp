// The batched sampling loop. Scheduling in brief:
//  - every sequence id has its own KV stream (llama.cpp's non-unified cache): a decoded token attends only
//    over its own sequence's cells. With one shared cache every token attended over the cells of all
//    sequences (masked), so a step cost grew with parallel × their lengths (issue 14: 58% of the time in
//    attention at 64 sequences). Each stream holds `cells_per_stream` cells: the longest prompt plus
//    max_tokens (bounded by the context), so no admitted sample can run out of cells.
//  - a *slot* (seq ids 0..parallel-1) runs one sample at a time.
//  - n == 1: a prompt is decoded straight into the stream of the slot that will sample it (prefill).
//  - n > 1: a *group* (a prompt and its n samples) decodes its prompt once into a *holder* stream (ids
//    parallel..parallel+holders-1) and keeps the last position's logits (n_vocab floats). Each sample
//    starts by copying the holder's stream into its slot's (llama_memory_seq_cp across streams copies the
//    K/V buffers at the start of the next decode), then samples its first token from the kept logits.
//  - prompts that all start with the same tokens (weak-ICL's k demonstrations, a chat system prompt) share
//    them: that common prefix is decoded once, first, into a *prefix* stream (the id after the holders), and
//    every prompt's decode starts with a copy of that stream and decodes only its own suffix. K and V of a
//    position depend only on the tokens before it, so the copy holds what the prompt's own decode would
//    (up to batch-shape rounding). Shared only from MIN_SHARED_PREFIX tokens up: a copy moves the whole
//    stream buffer, which costs more than decoding a few tokens.
//  - every step builds one llama_decode batch in seq-id order: the pending token of each generating slot,
//    prompt chunks of prefilling slots and holders. llama.cpp splits a multi-stream batch into ubatches of
//    consecutive seq ids with equal token counts, so id order keeps all generating slots in the first.
//  - finished slots are refilled at the next step (continuous batching).
#include "batch_sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>

#include "backend.h"

namespace w2s {
namespace {

enum class group_state { pending, decoding, ready, done };

struct group {
    int32_t prompt_index = 0;
    group_state state = group_state::pending;
    int32_t decoded = 0;      // prompt tokens decoded so far (long prompts span several steps)
    int32_t next_sample = 0;  // next sample index to start
    int32_t live = 0;         // started samples still running
    llama_seq_id stream = -1;   // where the prompt is decoded: a holder (n > 1) or the sampling slot (n == 1)
    std::vector<float> logits;  // (n_vocab) logits after the last prompt token (n > 1)
    int32_t logits_at = -1;     // batch index of the last prompt token in the current step
};

struct slot {
    bool active = false;        // generating
    int32_t prefill = -1;       // n == 1: the group whose prompt is being decoded into this slot's stream
    int32_t group = -1;
    int32_t sample_index = 0;
    llama_pos pos = 0;          // position of `pending`
    llama_token pending = -1;   // token to decode this step
    int32_t batch_at = -1;      // its index in the current batch
    int32_t budget = 0;         // tokens this sample may generate
    rng r;
    std::string text;
    int32_t n_tokens = 0;
    std::vector<llama_token> token_ids;  // with want_token_ids / want_logprobs
    std::vector<float> logprobs;         // with want_logprobs
    std::vector<uint32_t> starts;        // byte offset in `text` where each kept token's piece starts
};

// log softmax(logits)[tok] in nats, from a pass over the row (max-shifted, in double).
float log_prob_of(const float * logits, int32_t n_vocab, llama_token tok) {
    float mx = logits[0];
    for (int32_t i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
    return static_cast<float>(static_cast<double>(logits[tok] - mx) - std::log(sum));
}

// Shorter common prefixes are decoded with each prompt (see the scheduling notes above).
constexpr int32_t MIN_SHARED_PREFIX = 32;

size_t longest_prompt(const batch_sample_request & req) {
    size_t longest = 0;
    for (const auto & p : req.prompts) longest = std::max(longest, p.size());
    return longest;
}

}  // namespace

int32_t sampler_parallel(const batch_sample_request & req) {
    return std::max<int32_t>(1, std::min<int32_t>(req.parallel, static_cast<int32_t>(req.prompts.size()) * req.n));
}

int32_t sampler_holders(const batch_sample_request & req) {
    if (req.n <= 1) return 0;
    const int32_t parallel = sampler_parallel(req);
    // A holder lives until its group's last sample has started: about parallel / n groups are starting
    // samples at any time, plus one decoding ahead.
    const int32_t want = std::max<int32_t>(2, (parallel + req.n - 1) / req.n + 1);
    return std::min<int32_t>({want, parallel, static_cast<int32_t>(req.prompts.size())});
}

int32_t sampler_shared_prefix(const batch_sample_request & req) {
    if (!req.share_prefix || req.prompts.size() < 2) return 0;
    // The longest common token prefix, short of every prompt's last token (its logits start the samples).
    size_t common = req.prompts[0].size();
    for (const auto & p : req.prompts) {
        common = std::min(common, p.size() > 0 ? p.size() - 1 : 0);
        size_t k = 0;
        while (k < common && p[k] == req.prompts[0][k]) ++k;
        common = k;
        if (common < static_cast<size_t>(MIN_SHARED_PREFIX)) return 0;
    }
    return static_cast<int32_t>(common);
}

static int32_t sampler_streams(const batch_sample_request & req) {
    return sampler_parallel(req) + sampler_holders(req) + (sampler_shared_prefix(req) > 0 ? 1 : 0);
}

uint32_t sampler_cells_per_stream(const batch_sample_request & req) {
    const int32_t streams = sampler_streams(req);
    if (req.n_kv_cells > 0) return req.n_kv_cells / static_cast<uint32_t>(streams) / 256 * 256;
    const uint64_t need = std::min<uint64_t>(longest_prompt(req) + static_cast<uint64_t>(req.max_tokens),
                                             static_cast<uint64_t>(req.n_ctx_seq));
    return static_cast<uint32_t>((need + 255) / 256 * 256);
}

uint32_t default_kv_cells(const batch_sample_request & req) {
    return sampler_cells_per_stream(req) * static_cast<uint32_t>(sampler_streams(req));
}

bool run_batch_sampler(llama_model * model, const batch_sample_request & req, const std::atomic<bool> & cancel,
                       const std::function<void(const sample_progress &)> & on_progress,
                       std::vector<sample_output> & out, std::string & err) {
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    const int32_t parallel = sampler_parallel(req);
    const int32_t holders = sampler_holders(req);
    const bool shared_prompts = req.n > 1;
    const int32_t shared_prefix = sampler_shared_prefix(req);
    const llama_seq_id prefix_stream = shared_prefix > 0 ? parallel + holders : -1;
    const int32_t streams = sampler_streams(req);
    const uint32_t per_stream = sampler_cells_per_stream(req);
    const size_t longest = longest_prompt(req);
    if (per_stream <= longest) {
        err = "kvCells (" + std::to_string(req.n_kv_cells) + ") leaves " + std::to_string(per_stream) +
              " cells to each of the " + std::to_string(streams) + " sequences, which cannot hold the longest prompt (" +
              std::to_string(longest) + " tokens) and a generated token; raise kvCells or lower parallel";
        return false;
    }

    context_request cr;
    cr.n_ctx = per_stream * static_cast<uint32_t>(streams);
    cr.n_batch = static_cast<uint32_t>(std::max(req.n_batch, parallel));
    cr.n_seq_max = static_cast<uint32_t>(streams);
    cr.n_threads = req.n_threads;
    cr.adapters = req.adapters;
    cr.cancel = &cancel;
    cr.precise = req.high_precision;
    cr.unified = false;
    cr.flash_attn = req.flash_attn;
    context_ptr ctx = make_context(model, cr, err);
    if (!ctx) return false;
    llama_memory_t mem = llama_get_memory(ctx.get());
    // Positions a sample may reach: its stream's cells, and the context the caller allows.
    const int64_t stream_cells = std::min<int64_t>(llama_n_ctx_seq(ctx.get()), req.n_ctx_seq);
    const int32_t n_batch = static_cast<int32_t>(llama_n_batch(ctx.get()));
    auto budget_for = [&](size_t plen) {
        return static_cast<int32_t>(std::max<int64_t>(0, std::min<int64_t>(req.max_tokens, stream_cells - static_cast<int64_t>(plen))));
    };

    std::vector<group> groups(req.prompts.size());
    for (size_t i = 0; i < groups.size(); ++i) groups[i].prompt_index = static_cast<int32_t>(i);
    std::vector<slot> slots(parallel);
    std::vector<llama_seq_id> free_holders;
    for (int32_t h = parallel + holders - 1; h >= parallel; --h) free_holders.push_back(h);

    out.clear();
    out.reserve(req.prompts.size() * static_cast<size_t>(req.n));
    sample_progress prog;
    prog.total = static_cast<int32_t>(req.prompts.size()) * req.n;
    size_t next_group = 0;     // first group not yet opened
    size_t first_open = 0;     // groups before this one have started all their samples
    batch_buffer batch(n_batch);
    sampling_scratch scratch;
    std::vector<sampling_scratch> worker_scratch(static_cast<size_t>(std::max(0, req.n_threads - 1)));

    // The shared prefix, once, before any prompt: every prompt's decode starts from a copy of it.
    auto decode_error_text = [&](int32_t rc) {
        std::string e = cancel.load() ? "aborted" : decode_error(rc);
        if (!cancel.load()) {
            const std::string log = take_log_errors();
            if (!log.empty()) e += ": " + log;
        }
        return e;
    };
    for (int32_t p = 0; p < shared_prefix;) {
        if (cancel.load()) {
            err = "aborted";
            return false;
        }
        batch.clear();
        const int32_t end = std::min(shared_prefix, p + batch.capacity());
        // Only K and V are wanted; the chunk's last row is an output so that no decode runs without one.
        for (; p < end; ++p) batch.add(req.prompts[0][p], p, prefix_stream, p == end - 1);
        prog.prompt_tokens += batch.size();
        const int32_t rc = llama_decode(ctx.get(), batch.get());
        if (rc != 0) {
            err = decode_error_text(rc);
            return false;
        }
    }
    // A prompt's decode into `stream` starts after the shared prefix, from a copy of it.
    auto start_prompt = [&](group & g, llama_seq_id stream) {
        g.state = group_state::decoding;
        g.stream = stream;
        if (shared_prefix > 0) {
            llama_memory_seq_cp(mem, prefix_stream, stream, -1, -1);
            g.decoded = shared_prefix;
        }
    };

    auto maybe_close_group = [&](group & g) {
        if (g.next_sample >= req.n && g.live == 0 && g.state != group_state::done) {
            g.state = group_state::done;
            g.logits.clear();
            g.logits.shrink_to_fit();
        }
    };
    auto finish = [&](slot & s, finish_reason why) {
        group & g = groups[s.group];
        sample_output o;
        o.prompt_index = g.prompt_index;
        o.sample_index = s.sample_index;
        o.text = std::move(s.text);
        o.n_tokens = s.n_tokens;
        o.reason = why;
        o.token_ids = std::move(s.token_ids);
        o.logprobs = std::move(s.logprobs);
        out.push_back(std::move(o));
        llama_memory_seq_rm(mem, static_cast<llama_seq_id>(&s - slots.data()), -1, -1);
        s = slot();
        g.live -= 1;
        prog.finished += 1;
        maybe_close_group(g);
    };
    // Feeds one sampled token to a slot: EOS, stop strings and limits end it; otherwise it becomes pending.
    // `lp`: its log-prob (with want_logprobs).
    const bool keep_ids = req.want_token_ids || req.want_logprobs;
    char piece[256];
    auto accept = [&](slot & s, llama_token tok, float lp) {
        if (llama_vocab_is_eog(vocab, tok)) return finish(s, finish_reason::eos);
        s.n_tokens += 1;
        prog.tokens += 1;
        const int32_t n = llama_token_to_piece(vocab, tok, piece, sizeof(piece), 0, false);
        const size_t before = s.text.size();
        if (n > 0) s.text.append(piece, static_cast<size_t>(n));
        if (keep_ids) {
            s.token_ids.push_back(tok);
            s.starts.push_back(static_cast<uint32_t>(before));
            if (req.want_logprobs) s.logprobs.push_back(lp);
        }
        for (const auto & stop : req.stops) {
            // Only the tail can hold a new match: start just before the appended piece.
            const size_t from = before >= stop.size() ? before - stop.size() + 1 : 0;
            const size_t at = s.text.find(stop, from);
            if (at != std::string::npos) {
                s.text.resize(at);
                // Tokens that start inside the stop string are not part of the sample.
                size_t keep = s.starts.size();
                while (keep > 0 && s.starts[keep - 1] >= at) --keep;
                s.token_ids.resize(std::min(s.token_ids.size(), keep));
                if (req.want_logprobs) s.logprobs.resize(std::min(s.logprobs.size(), keep));
                return finish(s, finish_reason::stop);
            }
        }
        if (s.n_tokens >= s.budget) return finish(s, finish_reason::length);
        s.pending = tok;
    };
    // Starts the next sample of `g` in slot `slot_id`, its first token drawn from `logits`.
    auto start_sample = [&](group & g, int32_t slot_id, const float * logits) {
        slot & s = slots[slot_id];
        const size_t plen = req.prompts[g.prompt_index].size();
        s = slot();
        s.active = true;
        s.group = static_cast<int32_t>(&g - groups.data());
        s.sample_index = g.next_sample++;
        s.pos = static_cast<llama_pos>(plen);
        s.budget = budget_for(plen);
        s.r = rng(req.seed, static_cast<uint64_t>(g.prompt_index), static_cast<uint64_t>(s.sample_index));
        g.live += 1;
        if (shared_prompts) {
            llama_memory_seq_cp(mem, g.stream, slot_id, -1, -1);
            if (g.next_sample >= req.n) {
                // Every sample has its copy (made at the next decode, before that decode writes anything).
                llama_memory_seq_rm(mem, g.stream, -1, -1);
                free_holders.push_back(g.stream);
                g.stream = -1;
            }
        }
        if (s.budget == 0) return finish(s, finish_reason::length);
        const llama_token tok = sample_token(logits, n_vocab, req.sampling, s.r, scratch);
        accept(s, tok, req.want_logprobs ? log_prob_of(logits, n_vocab, tok) : 0.0f);
    };

    for (;;) {
        if (cancel.load()) {
            err = "aborted";
            return false;
        }
        int32_t free_slots = 0;
        for (int32_t i = 0; i < parallel; ++i) free_slots += (slots[i].active || slots[i].prefill >= 0) ? 0 : 1;
        if (shared_prompts) {
            // 1. Refill free slots from groups whose prompt is ready, oldest first.
            for (size_t gi = first_open; gi < next_group && free_slots > 0; ++gi) {
                group & g = groups[gi];
                if (g.state != group_state::ready) continue;
                while (g.next_sample < req.n && free_slots > 0) {
                    int32_t sid = 0;
                    while (slots[sid].active) ++sid;
                    start_sample(g, sid, g.logits.data());
                    free_slots -= slots[sid].active ? 1 : 0;
                }
            }
            while (first_open < next_group && groups[first_open].next_sample >= req.n) ++first_open;
            // 2. Open new groups while slots would otherwise idle and holders allow.
            int32_t waiting = 0;  // samples of opened groups not yet started
            for (size_t gi = first_open; gi < next_group; ++gi) waiting += req.n - groups[gi].next_sample;
            while (next_group < groups.size() && free_slots > waiting && !free_holders.empty()) {
                group & g = groups[next_group++];
                start_prompt(g, free_holders.back());
                free_holders.pop_back();
                waiting += req.n;
            }
        } else {
            // 1–2. Each free slot takes the next prompt and decodes it into its own stream.
            for (int32_t i = 0; i < parallel && next_group < groups.size(); ++i) {
                slot & s = slots[i];
                if (s.active || s.prefill >= 0) continue;
                start_prompt(groups[next_group], i);
                s.prefill = static_cast<int32_t>(next_group++);
            }
        }

        // 3. The batch in seq-id order: generating slots' pending tokens; prompt chunks in the room left.
        batch.clear();
        int32_t room = batch.capacity();
        for (int32_t i = 0; i < parallel; ++i) room -= slots[i].active ? 1 : 0;
        auto add_chunk = [&](group & g) {
            const auto & toks = req.prompts[g.prompt_index];
            const int32_t plen = static_cast<int32_t>(toks.size());
            while (g.decoded < plen && room > 0) {
                const int32_t p = g.decoded++;
                const int32_t at = batch.add(toks[p], p, g.stream, p == plen - 1);
                room -= 1;
                prog.prompt_tokens += 1;
                if (p == plen - 1) g.logits_at = at;
            }
        };
        for (int32_t i = 0; i < parallel; ++i) {
            slot & s = slots[i];
            if (s.active) s.batch_at = batch.add(s.pending, s.pos, i, true);
            else if (s.prefill >= 0) add_chunk(groups[s.prefill]);
        }
        if (shared_prompts) {
            // Holders in id order (ids above every slot).
            std::vector<group *> decoding;
            for (size_t gi = first_open; gi < next_group; ++gi) {
                if (groups[gi].state == group_state::decoding) decoding.push_back(&groups[gi]);
            }
            std::sort(decoding.begin(), decoding.end(), [](const group * a, const group * b) { return a->stream < b->stream; });
            for (group * g : decoding) add_chunk(*g);
        }

        if (batch.size() == 0) {
            bool work_left = next_group < groups.size();
            for (size_t gi = first_open; gi < next_group; ++gi) work_left = work_left || groups[gi].state != group_state::done;
            if (!work_left) break;
            err = "the sampler has work left but nothing to decode (internal scheduling error)";
            return false;
        }

        // 4. Decode; prompts that just finished start sampling; every generating slot samples.
        const int32_t rc = llama_decode(ctx.get(), batch.get());
        if (rc != 0) {
            err = decode_error_text(rc);
            return false;
        }
        // Row pointers first, on this thread: llama_get_logits_ith may reorder outputs on first use.
        std::vector<int32_t> live;
        for (int32_t i = 0; i < parallel; ++i) {
            if (slots[i].active && slots[i].batch_at >= 0) live.push_back(i);
        }
        std::vector<const float *> rows(live.size());
        for (size_t k = 0; k < live.size(); ++k) rows[k] = llama_get_logits_ith(ctx.get(), slots[live[k]].batch_at);
        for (size_t gi = first_open; gi < next_group; ++gi) {
            group & g = groups[gi];
            if (g.state != group_state::decoding || g.logits_at < 0) continue;
            const float * row = llama_get_logits_ith(ctx.get(), g.logits_at);
            g.logits_at = -1;
            g.state = group_state::ready;
            if (shared_prompts) {
                g.logits.assign(row, row + n_vocab);
            } else {
                // Its slot starts now; its first token is decoded in the next step.
                const int32_t sid = g.stream;
                slots[sid].prefill = -1;
                start_sample(g, sid, row);
                slots[sid].batch_at = -1;
            }
        }
        if (!shared_prompts) while (first_open < next_group && groups[first_open].next_sample >= req.n) ++first_open;
        // Sampling is a pass over n_vocab logits per sequence (a softmax over 32k entries ≈ 50 µs): spread it
        // over the job's threads (ggml's workers are idle between decodes). Each slot draws from its own
        // stream, so the split does not change any result; accepting tokens stays sequential.
        std::vector<llama_token> drawn(live.size());
        std::vector<float> drawn_lp(live.size(), 0.0f);
        const int32_t n_workers = std::max<int32_t>(1, std::min<int32_t>(req.n_threads, static_cast<int32_t>(live.size()) / 8));
        auto draw = [&](int32_t w, sampling_scratch & sc) {
            for (size_t k = static_cast<size_t>(w); k < live.size(); k += static_cast<size_t>(n_workers)) {
                drawn[k] = sample_token(rows[k], n_vocab, req.sampling, slots[live[k]].r, sc);
                if (req.want_logprobs) drawn_lp[k] = log_prob_of(rows[k], n_vocab, drawn[k]);
            }
        };
        std::vector<std::thread> helpers;
        for (int32_t w = 1; w < n_workers; ++w) helpers.emplace_back(draw, w, std::ref(worker_scratch[static_cast<size_t>(w - 1)]));
        draw(0, scratch);
        for (auto & h : helpers) h.join();
        for (size_t k = 0; k < live.size(); ++k) {
            slot & s = slots[live[k]];
            s.batch_at = -1;
            s.pos += 1;
            accept(s, drawn[k], drawn_lp[k]);
        }
        if (on_progress) on_progress(prog);
    }

    std::sort(out.begin(), out.end(), [](const sample_output & a, const sample_output & b) {
        return a.prompt_index != b.prompt_index ? a.prompt_index < b.prompt_index : a.sample_index < b.sample_index;
    });
    return true;
}

}  // namespace w2s
