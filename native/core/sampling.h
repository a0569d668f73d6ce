// Token sampling from one row of logits: greedy, temperature, top-k, top-p, with a per-sample RNG so a
// sample's tokens depend only on (seed, prompt index, sample index), never on batch composition.
#pragma once
#include <cstdint>
#include <vector>

#include "llama.h"

namespace w2s {

struct sampling_params {
    float temperature = 1.0f;  // <= 0: greedy (argmax, ties to the lowest token id)
    float top_p = 1.0f;        // nucleus mass in (0, 1]; 1 = off
    int32_t top_k = 0;         // keep the k most likely tokens; 0 = off
};

// xoshiro256** seeded through splitmix64: small, fast, and identical on every platform (std:: distributions
// are not), so seeded runs reproduce across machines.
class rng {
public:
    rng() = default;
    rng(uint64_t seed, uint64_t stream_a, uint64_t stream_b);
    uint64_t next();
    double uniform();  // [0, 1) with 53 random bits
private:
    uint64_t s_[4] = {1, 2, 3, 4};
};

// Scratch buffers reused across calls (one per worker thread): sampling runs once per generated token.
struct sampling_scratch {
    std::vector<float> probs;
    std::vector<float> block_sums;  // sums of probs per block of 256 (the fast path's inverse CDF)
    std::vector<llama_token_data> cand;
};

// Writes probs[i] = exp((logits[i] - max) · inv_t) (a vectorized expf, relative error ~1e-7) and the sum of
// each block of 256 of them into block_sums[i / 256]; returns the maximum. The fast path of sample_token.
float unnormalized_softmax(const float * logits, int32_t n, float inv_t, float * probs, float * block_sums);

llama_token sample_token(const float * logits, int32_t n_vocab, const sampling_params & p, rng & r,
                         sampling_scratch & s);

// log p(target | logits) with a max-subtracted log-sum-exp accumulated in double.
double token_logprob(const float * logits, int32_t n_vocab, llama_token target);

}  // namespace w2s
