// Types of scripts/llama-paths.mjs for the TypeScript loader.
export declare const PREBUILT_LIBS: string[];
export declare function prebuiltPackageName(platform?: string, arch?: string): string;
export declare function findPackageDir(name: string, from: string, tried?: string[]): string | undefined;
export declare function findNodeLlamaCppDir(from: string, tried?: string[]): string | undefined;
export declare function findPrebuiltLibDir(from: string, tried?: string[]): string | undefined;
export declare function findSourceBundle(from: string, tried?: string[]): string | undefined;
export declare function prebuiltRpath(): string[];
