// The batched sampling loop. Scheduling in brief:
//  - a *group* is one prompt and its n samples. Its prompt is decoded once into a holder sequence id
//    (ids parallel..2*parallel-1); the last prompt position's logits are kept (n_vocab floats).
//  - a *slot* (ids 0..parallel-1) runs one sample: it starts by copying the holder's cells (metadata only
//    in the unified cache), samples its first token from the kept logits, then decodes one token per step.
//  - every step builds one llama_decode batch: the pending token of each active slot plus prompt chunks of
//    newly opened groups; finished slots are refilled at the next step (continuous batching).
//  - KV cells are reserved before work is admitted (prompt once per group, max_tokens per slot), so a
//    decode never runs out of cells mid-run.
#include "batch_sampler.h"

#include <algorithm>
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
    llama_seq_id holder = -1;
    std::vector<float> logits;  // (n_vocab) logits after the last prompt token
    int32_t logits_at = -1;     // batch index of the last prompt token in the current step
};

struct slot {
    bool active = false;
    int32_t group = -1;
    int32_t sample_index = 0;
    llama_pos pos = 0;          // position of `pending`
    llama_token pending = -1;   // token to decode this step
    int32_t batch_at = -1;      // its index in the current batch
    int32_t budget = 0;         // KV cells reserved for this sample's generated tokens
    rng r;
    std::string text;
    int32_t n_tokens = 0;
};

int32_t sample_budget(const batch_sample_request & req, size_t prompt_len) {
    return std::max<int32_t>(0, std::min<int32_t>(req.max_tokens, req.n_ctx_seq - static_cast<int32_t>(prompt_len)));
}

}  // namespace

uint32_t default_kv_cells(const batch_sample_request & req) {
    size_t longest = 0;
    for (const auto & p : req.prompts) longest = std::max(longest, p.size());
    const uint64_t groups = std::min<uint64_t>(req.prompts.size(), static_cast<uint64_t>(req.parallel)) + 1;
    uint64_t cells = static_cast<uint64_t>(req.parallel) * static_cast<uint64_t>(req.max_tokens) + groups * longest;
    cells = std::min<uint64_t>(cells, static_cast<uint64_t>(req.n_ctx_seq) * static_cast<uint64_t>(req.parallel) * 2);
    cells = std::max<uint64_t>(cells, longest + static_cast<uint64_t>(req.max_tokens));
    return static_cast<uint32_t>((cells + 255) / 256 * 256);
}

bool run_batch_sampler(llama_model * model, const batch_sample_request & req, const std::atomic<bool> & cancel,
                       const std::function<void(const sample_progress &)> & on_progress,
                       std::vector<sample_output> & out, std::string & err) {
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    const int32_t parallel = std::max<int32_t>(1, std::min<int32_t>(req.parallel,
        static_cast<int32_t>(req.prompts.size()) * req.n));

    context_request cr;
    cr.n_ctx = req.n_kv_cells > 0 ? req.n_kv_cells : default_kv_cells(req);
    cr.n_batch = static_cast<uint32_t>(std::max(req.n_batch, parallel));
    cr.n_seq_max = static_cast<uint32_t>(2 * parallel);
    cr.n_threads = req.n_threads;
    cr.adapters = req.adapters;
    cr.cancel = &cancel;
    cr.precise = req.high_precision;
    context_ptr ctx = make_context(model, cr, err);
    if (!ctx) return false;
    llama_memory_t mem = llama_get_memory(ctx.get());
    const int64_t capacity = llama_n_ctx(ctx.get());
    const int32_t n_batch = static_cast<int32_t>(llama_n_batch(ctx.get()));

    std::vector<group> groups(req.prompts.size());
    for (size_t i = 0; i < groups.size(); ++i) groups[i].prompt_index = static_cast<int32_t>(i);
    std::vector<slot> slots(parallel);
    std::vector<llama_seq_id> free_holders;
    for (int32_t h = 2 * parallel - 1; h >= parallel; --h) free_holders.push_back(h);

    out.clear();
    out.reserve(req.prompts.size() * static_cast<size_t>(req.n));
    sample_progress prog;
    prog.total = static_cast<int32_t>(req.prompts.size()) * req.n;
    int64_t reserved = 0;      // KV cells promised to admitted work
    size_t next_group = 0;     // first group not yet opened
    size_t first_open = 0;     // groups before this one have started all their samples
    batch_buffer batch(n_batch);
    sampling_scratch scratch;
    std::vector<sampling_scratch> worker_scratch(static_cast<size_t>(std::max(0, req.n_threads - 1)));

    // Releases a group's prompt cells once nothing refers to them any more.
    auto maybe_close_group = [&](group & g) {
        if (g.next_sample >= req.n && g.live == 0 && g.state != group_state::done) {
            g.state = group_state::done;
            reserved -= static_cast<int64_t>(req.prompts[g.prompt_index].size());
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
        out.push_back(std::move(o));
        llama_memory_seq_rm(mem, static_cast<llama_seq_id>(&s - slots.data()), -1, -1);
        reserved -= s.budget;
        s = slot();
        g.live -= 1;
        prog.finished += 1;
        maybe_close_group(g);
    };
    // Feeds one sampled token to a slot: EOS, stop strings and limits end it; otherwise it becomes pending.
    char piece[256];
    auto accept = [&](slot & s, llama_token tok) {
        if (llama_vocab_is_eog(vocab, tok)) return finish(s, finish_reason::eos);
        s.n_tokens += 1;
        prog.tokens += 1;
        const int32_t n = llama_token_to_piece(vocab, tok, piece, sizeof(piece), 0, false);
        const size_t before = s.text.size();
        if (n > 0) s.text.append(piece, static_cast<size_t>(n));
        for (const auto & stop : req.stops) {
            // Only the tail can hold a new match: start just before the appended piece.
            const size_t from = before >= stop.size() ? before - stop.size() + 1 : 0;
            const size_t at = s.text.find(stop, from);
            if (at != std::string::npos) {
                s.text.resize(at);
                return finish(s, finish_reason::stop);
            }
        }
        if (s.n_tokens >= s.budget) return finish(s, finish_reason::length);
        s.pending = tok;
    };
    auto start_sample = [&](group & g, int32_t slot_id) {
        slot & s = slots[slot_id];
        const size_t plen = req.prompts[g.prompt_index].size();
        s = slot();
        s.active = true;
        s.group = static_cast<int32_t>(&g - groups.data());
        s.sample_index = g.next_sample++;
        s.pos = static_cast<llama_pos>(plen);
        s.budget = sample_budget(req, plen);
        s.r = rng(req.seed, static_cast<uint64_t>(g.prompt_index), static_cast<uint64_t>(s.sample_index));
        reserved += s.budget;
        g.live += 1;
        llama_memory_seq_cp(mem, g.holder, slot_id, -1, -1);
        if (g.next_sample >= req.n) {
            // Every sample of this prompt has its own copy now: drop the holder id (cells stay shared).
            llama_memory_seq_rm(mem, g.holder, -1, -1);
            free_holders.push_back(g.holder);
            g.holder = -1;
        }
        if (s.budget == 0) return finish(s, finish_reason::length);
        accept(s, sample_token(g.logits.data(), n_vocab, req.sampling, s.r, scratch));
    };

    for (;;) {
        if (cancel.load()) {
            err = "aborted";
            return false;
        }
        // 1. Refill free slots from groups whose prompt is ready, oldest first.
        int32_t free_slots = 0;
        for (int32_t i = 0; i < parallel; ++i) free_slots += slots[i].active ? 0 : 1;
        for (size_t gi = first_open; gi < next_group && free_slots > 0; ++gi) {
            group & g = groups[gi];
            if (g.state != group_state::ready) continue;
            while (g.next_sample < req.n && free_slots > 0) {
                const size_t plen = req.prompts[g.prompt_index].size();
                if (reserved + sample_budget(req, plen) > capacity) break;
                int32_t sid = 0;
                while (slots[sid].active) ++sid;
                start_sample(g, sid);
                free_slots -= slots[sid].active ? 1 : 0;
            }
        }
        while (first_open < next_group && groups[first_open].next_sample >= req.n) ++first_open;

        // 2. Pending tokens of active slots.
        batch.clear();
        for (int32_t i = 0; i < parallel; ++i) {
            slot & s = slots[i];
            if (!s.active) continue;
            s.batch_at = batch.add(s.pending, s.pos, i, true);
        }
        // 3. Open new groups while slots would otherwise idle, cells and holder ids allow, and the batch has room.
        int32_t waiting = 0;  // samples of opened groups not yet started
        for (size_t gi = first_open; gi < next_group; ++gi) waiting += req.n - groups[gi].next_sample;
        while (next_group < groups.size() && free_slots > waiting && !free_holders.empty()) {
            group & g = groups[next_group];
            const int64_t need = static_cast<int64_t>(req.prompts[g.prompt_index].size()) +
                                 sample_budget(req, req.prompts[g.prompt_index].size());
            if (reserved + need > capacity) break;
            reserved += static_cast<int64_t>(req.prompts[g.prompt_index].size());
            g.state = group_state::decoding;
            g.holder = free_holders.back();
            free_holders.pop_back();
            waiting += req.n;
            ++next_group;
        }
        // Prompt chunks of decoding groups fill the rest of the batch.
        for (size_t gi = first_open; gi < next_group && batch.size() < batch.capacity(); ++gi) {
            group & g = groups[gi];
            if (g.state != group_state::decoding) continue;
            const auto & toks = req.prompts[g.prompt_index];
            const int32_t plen = static_cast<int32_t>(toks.size());
            while (g.decoded < plen && batch.size() < batch.capacity()) {
                const int32_t p = g.decoded++;
                const int32_t at = batch.add(toks[p], p, g.holder, p == plen - 1);
                if (p == plen - 1) g.logits_at = at;
            }
        }

        if (batch.size() == 0) {
            bool work_left = next_group < groups.size();
            for (size_t gi = first_open; gi < next_group; ++gi) work_left = work_left || groups[gi].state != group_state::done;
            if (!work_left) break;
            err = "the KV cache (" + std::to_string(capacity) + " cells) cannot hold the next prompt and its "
                  "samples; raise kvCells or lower maxTokens";
            return false;
        }

        // 4. Decode, then sample every active slot and keep the logits of prompts that just finished.
        const int32_t rc = llama_decode(ctx.get(), batch.get());
        if (rc != 0) {
            err = cancel.load() ? "aborted" : decode_error(rc);
            if (!cancel.load()) {
                const std::string log = take_log_errors();
                if (!log.empty()) err += ": " + log;
            }
            return false;
        }
        for (size_t gi = first_open; gi < next_group; ++gi) {
            group & g = groups[gi];
            if (g.state == group_state::decoding && g.logits_at >= 0) {
                const float * row = llama_get_logits_ith(ctx.get(), g.logits_at);
                g.logits.assign(row, row + n_vocab);
                g.logits_at = -1;
                g.state = group_state::ready;
            }
        }
        // Sampling is a pass over n_vocab logits per sequence (a softmax over 32k entries ≈ 50 µs): spread it
        // over the job's threads (ggml's workers are idle between decodes). Each slot draws from its own
        // stream, so the split does not change any result; accepting tokens stays sequential.
        std::vector<int32_t> live;
        for (int32_t i = 0; i < parallel; ++i) {
            if (slots[i].active && slots[i].batch_at >= 0) live.push_back(i);
        }
        std::vector<llama_token> drawn(live.size());
        // Row pointers first, on this thread: llama_get_logits_ith may reorder outputs on first use.
        std::vector<const float *> rows(live.size());
        for (size_t k = 0; k < live.size(); ++k) rows[k] = llama_get_logits_ith(ctx.get(), slots[live[k]].batch_at);
        const int32_t n_workers = std::max<int32_t>(1, std::min<int32_t>(req.n_threads, static_cast<int32_t>(live.size()) / 8));
        auto draw = [&](int32_t w, sampling_scratch & sc) {
            for (size_t k = static_cast<size_t>(w); k < live.size(); k += static_cast<size_t>(n_workers)) {
                drawn[k] = sample_token(rows[k], n_vocab, req.sampling, slots[live[k]].r, sc);
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
            accept(s, drawn[k]);
        }
        if (on_progress) on_progress(prog);
    }

    std::sort(out.begin(), out.end(), [](const sample_output & a, const sample_output & b) {
        return a.prompt_index != b.prompt_index ? a.prompt_index < b.prompt_index : a.sample_index < b.sample_index;
    });
    return true;
}

}  // namespace w2s
