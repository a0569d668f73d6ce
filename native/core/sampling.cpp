// Token sampling from one row of logits (greedy / temperature / top-k / top-p) and log-probabilities.
#include "sampling.h"

#include <algorithm>
#include <cmath>

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
        // Fast path (the method's Stage II setting, T = 1, no truncation): one softmax pass, O(n_vocab).
        float mx = logits[0];
        for (int32_t i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
        s.probs.resize(n_vocab);
        double sum = 0.0;
        for (int32_t i = 0; i < n_vocab; ++i) {
            const float e = std::exp((logits[i] - mx) * inv_t);
            s.probs[i] = e;
            sum += e;
        }
        double u = r.uniform() * sum;
        for (int32_t i = 0; i < n_vocab; ++i) {
            u -= s.probs[i];
            if (u < 0.0) return i;
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
