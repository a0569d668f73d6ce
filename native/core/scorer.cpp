// Sequence scoring through llama_decode: sequences are packed into shared batches (one sequence id each,
// long ones split over several calls), logits are requested only where a completion token is predicted.
#include "scorer.h"

#include <algorithm>

#include "backend.h"
#include "sampling.h"

namespace w2s {

bool run_scorer(llama_model * model, const score_request & req, const std::atomic<bool> & cancel,
                const std::function<void(int32_t, int32_t)> & on_progress,
                std::vector<score_output> & out, std::string & err) {
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    const int32_t total = static_cast<int32_t>(req.items.size());
    out.assign(req.items.size(), score_output());

    // Items with an empty completion need no decoding: their log-prob is 0 by definition.
    std::vector<int32_t> todo;
    size_t longest = 0;
    for (int32_t i = 0; i < total; ++i) {
        const auto & it = req.items[i];
        if (it.tokens.size() > static_cast<size_t>(it.n_prompt)) {
            todo.push_back(i);
            longest = std::max(longest, it.tokens.size());
        }
    }
    int32_t done = total - static_cast<int32_t>(todo.size());
    if (todo.empty()) return true;

    const int32_t parallel = std::max<int32_t>(1, std::min<int32_t>(req.parallel, static_cast<int32_t>(todo.size())));
    context_request cr;
    const uint64_t cells = std::max<uint64_t>(longest, std::min<uint64_t>(longest * parallel, std::max<uint64_t>(longest, 8192)));
    cr.n_ctx = static_cast<uint32_t>((cells + 255) / 256 * 256);
    cr.n_batch = static_cast<uint32_t>(std::max(req.n_batch, 1));
    cr.n_seq_max = static_cast<uint32_t>(parallel);
    cr.n_threads = req.n_threads;
    cr.adapters = req.adapters;
    cr.cancel = &cancel;
    cr.precise = true;
    context_ptr ctx = make_context(model, cr, err);
    if (!ctx) return false;
    llama_memory_t mem = llama_get_memory(ctx.get());
    const int64_t capacity = llama_n_ctx(ctx.get());
    const int32_t n_batch = static_cast<int32_t>(llama_n_batch(ctx.get()));

    struct active_item {
        int32_t item = -1;     // index into req.items; -1 = free
        int32_t fed = 0;       // tokens decoded so far
        std::vector<std::pair<int32_t, int32_t>> outputs;  // (batch index, token position) this step
    };
    std::vector<active_item> act(parallel);
    size_t next = 0;
    int64_t reserved = 0;
    batch_buffer batch(n_batch);

    while (done < total) {
        if (cancel.load()) {
            err = "aborted";
            return false;
        }
        for (int32_t s = 0; s < parallel && next < todo.size(); ++s) {
            if (act[s].item >= 0) continue;
            const int64_t len = static_cast<int64_t>(req.items[todo[next]].tokens.size());
            if (reserved + len > capacity) break;
            reserved += len;
            act[s].item = todo[next++];
            act[s].fed = 0;
        }
        batch.clear();
        for (int32_t s = 0; s < parallel && batch.size() < n_batch; ++s) {
            active_item & a = act[s];
            if (a.item < 0) continue;
            const score_item & it = req.items[a.item];
            const int32_t len = static_cast<int32_t>(it.tokens.size());
            a.outputs.clear();
            // The last token predicts nothing; position p's logits predict token p + 1.
            while (a.fed < len - 1 && batch.size() < n_batch) {
                const int32_t p = a.fed++;
                const bool want = p >= it.n_prompt - 1;
                const int32_t at = batch.add(it.tokens[p], p, s, want);
                if (want) a.outputs.emplace_back(at, p);
            }
        }
        if (batch.size() == 0) {
            err = "internal: the scorer made no progress";
            return false;
        }
        const int32_t rc = llama_decode(ctx.get(), batch.get());
        if (rc != 0) {
            err = cancel.load() ? "aborted" : decode_error(rc) + " " + take_log_errors();
            return false;
        }
        for (int32_t s = 0; s < parallel; ++s) {
            active_item & a = act[s];
            if (a.item < 0) continue;
            const score_item & it = req.items[a.item];
            score_output & o = out[a.item];
            for (const auto & [at, p] : a.outputs) {
                const double lp = token_logprob(llama_get_logits_ith(ctx.get(), at), n_vocab, it.tokens[p + 1]);
                o.logprobs.push_back(static_cast<float>(lp));
                o.sum += lp;
            }
            a.outputs.clear();
            if (a.fed >= static_cast<int32_t>(it.tokens.size()) - 1) {
                llama_memory_seq_rm(mem, s, -1, -1);
                reserved -= static_cast<int64_t>(it.tokens.size());
                a.item = -1;
                done += 1;
            }
        }
        if (on_progress) on_progress(done, total);
    }
    return true;
}

}  // namespace w2s
