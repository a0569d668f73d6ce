// Token sampling from one row of logits (greedy / temperature / top-k / top-p) and log-probabilities.
#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__GNUC__)
// The 8-float helpers below are always inlined into one clone, so the ABI note GCC gives for passing 32-byte
// vectors in the baseline ISA never applies.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace w2s {

static uint64_t splitmix64(uint64_t & x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

rng::rng(uint64_t seed, uint64_t stream_a, uint64_t stream_b) {
    uint64_t x = seed;
    uint64_t mix = splitmix64(x) ^ (stream_a * 0xD1B54A32D192ED03ull);
    x = mix;
    mix = splitmix64(x) ^ (stream_b * 0x8CB92BA72F3D8DD7ull);
    x = mix;
    for (auto & v : s_) v = splitmix64(x);
}

uint64_t rng::next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

double rng::uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }

namespace {

// exp(x) for x <= 0 (a logit minus the row's maximum, times 1/T): Cephes' expf — x = n·ln2 + r with
// |r| <= ln2/2, a degree-6 polynomial for exp(r), 2^n from the exponent bits — with no calls or branches, so
// the loops below vectorize (relative error ~1e-7, like expf's). Below -87 the result is clamped to ~1.6e-38
// instead of underflowing: a mass of < 1e-33 over any vocabulary.
// The same steps for one float or eight (T = float or v8f below).
template <typename T> __attribute__((always_inline)) inline T exp_poly(T x, T & t) {
    t = x * 1.44269504088896341f + 12582912.0f;  // 1.5·2^23: round(x / ln2) lands in the low mantissa bits
    const T n = t - 12582912.0f;
    T r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    T p = T{} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * r * r + r + 1.0f;
}

inline float exp_nonpos(float x) {
    x = x < -87.0f ? -87.0f : x;
    float t;
    const float p = exp_poly(x, t);
    int32_t ti;
    std::memcpy(&ti, &t, sizeof(ti));
    const int32_t e = (ti - 0x4B400000 + 127) << 23;  // 2^n as a float's bits (n >= -126 here)
    float scale;
    std::memcpy(&scale, &e, sizeof(scale));
    return p * scale;
}

constexpr int32_t BLOCK = 256;  // probabilities summed per block, so a draw scans blocks, then one block

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// An AVX2 clone beside the baseline (SSE2) one, picked at load time by the CPU.
#define W2S_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define W2S_SIMD_CLONES
#endif

#if defined(__GNUC__)
// GCC/Clang vector extensions: 8 floats, compiled to AVX2 ymm or pairs of SSE xmm registers per clone.
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

// Always inlined into its caller's clone (returning a 32-byte vector from a call would depend on the ISA).
__attribute__((always_inline)) inline v8f exp_nonpos8(v8f x) {
    const v8f lo = v8f{} - 87.0f;
    x = x < lo ? lo : x;
    v8f t;
    const v8f p = exp_poly(x, t);
    const v8i e = ((v8i)t - 0x4B400000 + 127) << 23;  // a vector cast reinterprets the bits
    return p * (v8f)e;
}
#endif

}  // namespace

// (The sampling fast path's whole cost: ~18% of a 25M model's decode at 32k vocabulary with scalar expf.)
W2S_SIMD_CLONES float unnormalized_softmax(const float * logits, int32_t n, float inv_t, float * probs, float * block_sums) {
    int32_t i = 0;
    float mx = logits[0];
#if defined(__GNUC__)
    v8f m = v8f{} + logits[0];
    for (; i + 8 <= n; i += 8) {
        v8f x;
        std::memcpy(&x, logits + i, sizeof(x));
        m = x > m ? x : m;
    }
    for (int j = 0; j < 8; ++j) mx = m[j] > mx ? m[j] : mx;
#endif
    for (; i < n; ++i) mx = logits[i] > mx ? logits[i] : mx;
    for (int32_t b0 = 0; b0 < n; b0 += BLOCK) {
        const int32_t b1 = std::min(n, b0 + BLOCK);
        int32_t k = b0;
        float sum = 0.0f;
#if defined(__GNUC__)
        v8f acc = v8f{};
        for (; k + 8 <= b1; k += 8) {
            v8f x;
            std::memcpy(&x, logits + k, sizeof(x));
            const v8f e = exp_nonpos8((x - mx) * inv_t);
            std::memcpy(probs + k, &e, sizeof(e));
            acc += e;
        }
        sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
#endif
        for (; k < b1; ++k) {
            probs[k] = exp_nonpos((logits[k] - mx) * inv_t);
            sum += probs[k];
        }
        block_sums[b0 / BLOCK] = sum;
    }
    return mx;
}

static llama_token argmax(const float * logits, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; ++i) {
        if (logits[i] > logits[best]) best = i;
    }
    return best;
}

llama_token sample_token(const float * logits, int32_t n_vocab, const sampling_params & p, rng & r,
                         sampling_scratch & s) {
    if (p.temperature <= 0.0f) return argmax(logits, n_vocab);
    const float inv_t = 1.0f / p.temperature;
    const bool use_k = p.top_k > 0 && p.top_k < n_vocab;
    const bool use_p = p.top_p < 1.0f;

    if (!use_k && !use_p) {
        // Fast path (the method's Stage II setting, T = 1, no truncation): one vectorized softmax pass, then
        // the inverse CDF over block sums and within one block.
        s.probs.resize(n_vocab);
        const int32_t n_blocks = (n_vocab + BLOCK - 1) / BLOCK;
        s.block_sums.resize(n_blocks);
        unnormalized_softmax(logits, n_vocab, inv_t, s.probs.data(), s.block_sums.data());
        double sum = 0.0;
        for (int32_t b = 0; b < n_blocks; ++b) sum += s.block_sums[b];
        double u = r.uniform() * sum;
        for (int32_t b = 0; b < n_blocks; ++b) {
            if (u >= s.block_sums[b] && b + 1 < n_blocks) {
                u -= s.block_sums[b];
                continue;
            }
            const int32_t end = std::min(n_vocab, (b + 1) * BLOCK);
            for (int32_t i = b * BLOCK; i < end; ++i) {
                u -= s.probs[i];
                if (u < 0.0) return i;
            }
            break;
        }
        return argmax(logits, n_vocab);  // rounding left u >= 0: the mass ends at the most likely token
    }

    // Truncated sampling: candidates sorted by logit (descending, ties by id), then top-k, then top-p.
    s.cand.resize(n_vocab);
    for (int32_t i = 0; i < n_vocab; ++i) s.cand[i] = {i, logits[i], 0.0f};
    auto by_logit = [](const llama_token_data & a, const llama_token_data & b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    size_t n = static_cast<size_t>(n_vocab);
    if (use_k) {
        n = static_cast<size_t>(p.top_k);
        std::partial_sort(s.cand.begin(), s.cand.begin() + n, s.cand.end(), by_logit);
    } else {
        std::sort(s.cand.begin(), s.cand.end(), by_logit);
    }
    const float mx = s.cand[0].logit;
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
        s.cand[i].p = std::exp((s.cand[i].logit - mx) * inv_t);
        sum += s.cand[i].p;
    }
    if (use_p) {
        // Keep the smallest prefix whose mass reaches top_p (at least one token).
        const double target = static_cast<double>(p.top_p) * sum;
        double cum = 0.0;
        size_t keep = 0;
        while (keep < n) {
            cum += s.cand[keep].p;
            ++keep;
            if (cum >= target) break;
        }
        n = keep;
        sum = cum;
    }
    double u = r.uniform() * sum;
    for (size_t i = 0; i < n; ++i) {
        u -= s.cand[i].p;
        if (u < 0.0) return s.cand[i].id;
    }
    return s.cand[0].id;
}

double token_logprob(const float * logits, int32_t n_vocab, llama_token target) {
    float mx = logits[0];
    for (int32_t i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
    return static_cast<double>(logits[target] - mx) - std::log(sum);
}

}  // namespace w2s
