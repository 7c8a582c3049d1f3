// emu.cpp — scheduler, barriers, warp collectives and the C entry points of the CUDA emulator.
// See emu.h for the model. Blocks run one after another on the calling thread; within a block each
// CUDA thread is a ucontext fiber with its own stack.
#include "emu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
}
#else
#define EMU_ASAN 0
#endif

extern "C" const EmuKernel* const emu_table[];
extern "C" const size_t emu_table_len;

namespace emu {

thread_local uint3 g_block_idx;
thread_local dim3 g_block_dim;
thread_local dim3 g_grid_dim;

namespace {

// ASan clears the shadow of the whole target stack at every swapcontext: keep its stacks small
constexpr size_t kStackSize = EMU_ASAN ? (64u << 10) : (128u << 10);
constexpr size_t kMaxDynShared = 48u << 10;  // without cudaFuncAttributeMaxDynamicSharedMemorySize

enum State { kRunnable, kBarrierWait, kWarpWait, kDone };

struct Record {  // one lane's deposit at the warp collective it waits in
    int kind = 0;
    unsigned int mask = 0;
    int line = 0;
    uint64_t bits = 0;
};

struct Fiber {
    ucontext_t ctx;
    void* stack = nullptr;
    uint3 tid;
    unsigned int linear = 0;
    State state = kRunnable;
    uint64_t bar_gen = 0;  // generation this fiber waits to see pass
    int bar_line = 0;
    Record rec;            // valid while state == kWarpWait
    bool released = false; // the collective completed; exch holds its values
    uint64_t exch[32];     // gathered values of the last collective
    void* fake_stack = nullptr;
};

struct Block {
    std::vector<Fiber>* fibers = nullptr;
    unsigned int nthreads = 0;
    unsigned int arrived = 0;
    int bar_line = 0;
    uint64_t bar_gen = 0;
    unsigned int done = 0;
};

struct Launch {
    const EmuKernel* kernel = nullptr;
    const void* params = nullptr;
    void* dyn = nullptr;
    std::string err;
    bool failed = false;
};

thread_local Fiber* t_cur = nullptr;
thread_local ucontext_t t_sched;
thread_local Block* t_block = nullptr;
thread_local Launch* t_launch = nullptr;
#if EMU_ASAN
thread_local const void* t_sched_bottom = nullptr;
thread_local size_t t_sched_size = 0;
thread_local void* t_sched_fake = nullptr;
#endif
thread_local std::vector<void*> t_stacks;  // reused across launches on this thread

void* stack_at(size_t i) {
    while (t_stacks.size() <= i) {
        void* s = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (s == MAP_FAILED) return nullptr;
        t_stacks.push_back(s);
    }
    return t_stacks[i];
}

// fiber -> scheduler; `final` when the fiber will never run again
void to_scheduler(bool final) {
    Fiber* f = t_cur;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(final ? nullptr : &f->fake_stack, t_sched_bottom, t_sched_size);
#else
    (void)final;
#endif
    swapcontext(&f->ctx, &t_sched);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &t_sched_bottom, &t_sched_size);
#endif
}

void fiber_main() {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &t_sched_bottom, &t_sched_size);
#endif
    t_launch->kernel->entry(t_launch->params);
    Fiber* f = t_cur;
    f->state = kDone;
    t_block->done++;
    to_scheduler(true);
    abort();  // unreachable: a finished fiber is never resumed
}

void vfail(const char* fmt, va_list ap) {
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    if (!t_launch->failed) {
        t_launch->failed = true;
        t_launch->err = buf;
    }
}

void set_err(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(fmt, ap);
    va_end(ap);
}

unsigned int warp_lanes(const Block& b, unsigned int warp) {  // lanes that exist in this warp
    const unsigned int first = warp * 32u;
    const unsigned int n = b.nthreads - first;
    return n >= 32u ? 32u : n;
}

const char* kind_name(int k) {
    return k == kShfl ? "__shfl*_sync" : (k == kBallot ? "__ballot_sync" : "__syncwarp");
}

// May fiber f leave its wait? Sets the launch error on misuse.
// A warp collective completes when every lane of its mask waits (unreleased) in a collective with
// the same mask; then all of them are released at once with the gathered values. Lanes that are
// elsewhere (another barrier, another mask) may still come: only a stall of the whole block is a
// deadlock. Different source lines may meet (independent thread scheduling allows it); different
// kinds (shuffle vs ballot vs syncwarp) may not.
bool can_proceed(Fiber& f) {
    Block& b = *t_block;
    if (f.state == kBarrierWait) return b.bar_gen != f.bar_gen;
    if (f.state != kWarpWait || f.released) return true;
    std::vector<Fiber>& fs = *b.fibers;
    const unsigned int base = f.linear & ~31u;
    const Record& mine = f.rec;
    for (unsigned int l = 0; l < 32; ++l) {
        if (!(mine.mask & (1u << l))) continue;
        Fiber& o = fs[base + l];
        if (o.state == kDone) {
            set_err("line %d: %s with mask 0x%08x in thread %u waits for lane %u, which has exited", mine.line, kind_name(mine.kind), mine.mask, f.linear, l);
            return false;
        }
        if (o.state != kWarpWait || o.released || o.rec.mask != mine.mask) return false;
    }
    for (unsigned int l = 0; l < 32; ++l) {
        if (!(mine.mask & (1u << l))) continue;
        const Fiber& o = fs[base + l];
        if (o.rec.kind != mine.kind) {
            set_err("divergent warp collective: thread %u at line %d (%s) meets thread %u at line %d (%s), mask 0x%08x", f.linear, mine.line, kind_name(mine.kind), o.linear, o.rec.line, kind_name(o.rec.kind), mine.mask);
            return false;
        }
    }
    for (unsigned int l = 0; l < 32; ++l) {
        if (!(mine.mask & (1u << l))) continue;
        Fiber& o = fs[base + l];
        for (unsigned int k = 0; k < 32; ++k)
            o.exch[k] = (mine.mask & (1u << k)) ? fs[base + k].rec.bits : 0;
        o.released = true;
    }
    return true;
}

std::string describe_stall(const Block& b) {
    const std::vector<Fiber>& fs = *b.fibers;
    unsigned int at_bar = 0, at_warp = 0;
    int bar_line = 0, warp_line = 0;
    unsigned int warp_thread = 0;
    for (const Fiber& f : fs) {
        if (f.state == kBarrierWait) {
            at_bar++;
            bar_line = f.bar_line;
        } else if (f.state == kWarpWait) {
            if (at_warp == 0) {
                warp_line = f.rec.line;
                warp_thread = f.linear;
            }
            at_warp++;
        }
    }
    char buf[512];
    if (at_warp == 0 && b.done > 0) {
        snprintf(buf, sizeof buf, "divergent barrier: %u threads wait at __syncthreads (line %d) while %u threads of the block have exited", at_bar, bar_line, b.done);
    } else if (at_warp == 0) {
        snprintf(buf, sizeof buf, "deadlock: %u threads wait at __syncthreads (line %d)", at_bar, bar_line);
    } else {
        snprintf(buf, sizeof buf, "deadlock: %u threads wait at __syncthreads (line %d), %u threads in warp collectives (thread %u at line %d), %u exited", at_bar, bar_line, at_warp, warp_thread, warp_line, b.done);
    }
    return buf;
}

uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Runs one block to completion (or error). Returns false on error.
bool run_block(std::vector<Fiber>& fs, unsigned int nthreads, int order, uint64_t seed, uint64_t block_linear) {
    Block b;
    b.fibers = &fs;
    b.nthreads = nthreads;
    t_block = &b;
    ucontext_t tmpl;  // one getcontext (a syscall) per block, copied into every fiber
    getcontext(&tmpl);
    for (unsigned int i = 0; i < nthreads; ++i) {
        Fiber& f = fs[i];
        f.state = kRunnable;
        f.bar_gen = 0;
        f.rec = Record();
        f.released = false;
        f.fake_stack = nullptr;
        f.linear = i;
        f.tid.x = i % g_block_dim.x;
        f.tid.y = (i / g_block_dim.x) % g_block_dim.y;
        f.tid.z = i / (g_block_dim.x * g_block_dim.y);
        f.ctx = tmpl;
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = kStackSize;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, fiber_main, 0);
    }
    std::vector<unsigned int> ord(nthreads);
    for (unsigned int i = 0; i < nthreads; ++i) ord[i] = order == 1 ? nthreads - 1 - i : i;
    if (order == 2) {
        uint64_t s = seed ^ (block_linear * 0xD1B54A32D192ED03ull);
        for (unsigned int i = nthreads; i > 1; --i) {
            const unsigned int j = (unsigned int)(splitmix(s) % i);
            const unsigned int t = ord[i - 1];
            ord[i - 1] = ord[j];
            ord[j] = t;
        }
    }
    while (b.done < nthreads) {
        bool progressed = false;
        for (unsigned int idx : ord) {
            Fiber& f = fs[idx];
            if (f.state == kDone) continue;
            if (!can_proceed(f)) {
                if (t_launch->failed) return false;
                continue;
            }
            f.state = kRunnable;
            t_cur = &f;
#if EMU_ASAN
            __sanitizer_start_switch_fiber(&t_sched_fake, f.stack, kStackSize);
#endif
            swapcontext(&t_sched, &f.ctx);
#if EMU_ASAN
            __sanitizer_finish_switch_fiber(t_sched_fake, nullptr, nullptr);
#endif
            t_cur = nullptr;
            progressed = true;
            if (t_launch->failed) return false;
        }
        if (!progressed) {
            set_err("%s", describe_stall(b).c_str());
            return false;
        }
    }
    return true;
}

}  // namespace

const uint3& thread_idx() { return t_cur->tid; }
unsigned int lane_id() { return t_cur->linear & 31u; }
void* dyn_shared() { return t_launch->dyn; }

void fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(fmt, ap);
    va_end(ap);
    to_scheduler(true);
    abort();  // unreachable: the scheduler never resumes a failed launch
}

void syncthreads(int line) {
    Fiber* f = t_cur;
    Block& b = *t_block;
    if (b.arrived > 0 && b.bar_line != line) {
        fail("divergent barrier: thread %u waits at __syncthreads on line %d while other threads wait at line %d", f->linear, line, b.bar_line);
    }
    if (b.arrived == 0) b.bar_line = line;
    b.arrived++;
    if (b.arrived == b.nthreads) {  // last one in: release everyone, keep running
        b.arrived = 0;
        b.bar_gen++;
        return;
    }
    f->state = kBarrierWait;
    f->bar_gen = b.bar_gen;
    f->bar_line = line;
    to_scheduler(false);
}

const uint64_t* warp_exchange(int kind, unsigned int mask, uint64_t bits, int line) {
    Fiber* f = t_cur;
    Block& b = *t_block;
    const unsigned int lane = f->linear & 31u;
    if (!(mask & (1u << lane))) fail("line %d: thread %u calls %s with mask 0x%08x, which leaves out its own lane %u", line, f->linear, kind_name(kind), mask, lane);
    const unsigned int lanes = warp_lanes(b, f->linear >> 5);
    if (lanes < 32u && (mask >> lanes) != 0u) fail("line %d: %s with mask 0x%08x names lanes >= %u, which do not exist in this partial warp (block of %u threads)", line, kind_name(kind), mask, lanes, b.nthreads);
    Record& r = f->rec;
    r.kind = kind;
    r.mask = mask;
    r.line = line;
    r.bits = bits;
    f->released = false;
    f->state = kWarpWait;
    // Yield so that the other lanes deposit; the scheduler resumes us once they all did.
    to_scheduler(false);
    return f->exch;
}

}  // namespace emu

using namespace emu;

extern "C" {

void* emu_alloc(size_t bytes) { return malloc(bytes == 0 ? 1 : bytes); }
void emu_free(void* p) { free(p); }
size_t emu_kernel_count() { return emu_table_len; }
const char* emu_kernel_name(size_t i) { return i < emu_table_len ? emu_table[i]->name : nullptr; }

// order: 0 forward, 1 reverse, 2 shuffled with `seed`. Returns 0, or 1 with a message in err.
int emu_launch(const char* kernel, const unsigned int* grid, const unsigned int* block, size_t shmem, const void* params, size_t params_len, int order, uint64_t seed, char* err, size_t err_len) {
    Launch launch;
    t_launch = &launch;
    auto finish = [&]() -> int {
        if (!launch.failed) return 0;
        if (err && err_len) snprintf(err, err_len, "%s: %s", kernel ? kernel : "(null)", launch.err.c_str());
        return 1;
    };
    const EmuKernel* k = nullptr;
    for (size_t i = 0; kernel && i < emu_table_len; ++i)
        if (strcmp(emu_table[i]->name, kernel) == 0) k = emu_table[i];
    if (!k) {
        set_err("no such kernel in the emulator");
        return finish();
    }
    launch.kernel = k;
    launch.params = params;
    if (params_len != k->params_size) {
        set_err("parameter struct is %zu bytes, the kernel takes %zu", params_len, k->params_size);
        return finish();
    }
    const unsigned long long nthreads = (unsigned long long)block[0] * block[1] * block[2];
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || block[0] == 0 || block[1] == 0 || block[2] == 0) {
        set_err("bad launch configuration: zero dimension (grid %u x %u x %u, block %u x %u x %u)", grid[0], grid[1], grid[2], block[0], block[1], block[2]);
        return finish();
    }
    if (nthreads > 1024 || block[0] > 1024 || block[1] > 1024 || block[2] > 64) {
        set_err("bad launch configuration: block %u x %u x %u exceeds 1024 threads or a per-axis limit", block[0], block[1], block[2]);
        return finish();
    }
    if (grid[1] > 65535 || grid[2] > 65535 || grid[0] > 2147483647u) {
        set_err("bad launch configuration: grid %u x %u x %u exceeds the limits", grid[0], grid[1], grid[2]);
        return finish();
    }
    if (shmem > kMaxDynShared) {
        set_err("bad launch configuration: %zu bytes of dynamic shared memory exceed %zu", shmem, kMaxDynShared);
        return finish();
    }
    std::vector<Fiber> fs(nthreads);
    for (size_t i = 0; i < nthreads; ++i) {
        fs[i].stack = stack_at(i);
        if (!fs[i].stack) {
            set_err("cannot map a fiber stack");
            return finish();
        }
    }
    std::vector<unsigned char> dyn(shmem > 0 ? shmem : 1, 0xff);  // NaN-filled: uninitialised reads show
    launch.dyn = dyn.data();
    g_grid_dim = dim3(grid[0], grid[1], grid[2]);
    g_block_dim = dim3(block[0], block[1], block[2]);
    uint64_t linear = 0;
    for (unsigned int z = 0; z < grid[2] && !launch.failed; ++z)
        for (unsigned int y = 0; y < grid[1] && !launch.failed; ++y)
            for (unsigned int x = 0; x < grid[0] && !launch.failed; ++x) {
                g_block_idx.x = x;
                g_block_idx.y = y;
                g_block_idx.z = z;
                memset(dyn.data(), 0xff, dyn.size());
                if (!run_block(fs, (unsigned int)nthreads, order, seed, linear++)) break;
            }
    t_block = nullptr;
    const int rc = finish();
    t_launch = nullptr;
    return rc;
}

}  // extern "C"
