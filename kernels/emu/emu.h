// emu.h — a CPU emulator of the CUDA execution model, force-included (g++ -include emu.h) when the
// very same kernels/*.cu files are compiled as C++ into the crate's emulator library.
//
// A launch runs its blocks one after another on the calling thread; a block's threads are
// cooperative fibers (ucontext) scheduled in a chosen order (forward, reverse, seeded shuffle) that
// switch only at __syncthreads and warp collectives, so a missing barrier shows up as a wrong answer
// under some order. Misuse is reported as an error string returned to the caller, never a crash:
// deadlock, divergent barrier, a shuffle reading a lane outside its mask or a missing lane, bad launch
// configurations. Device memory is plain malloc, so AddressSanitizer redzones catch out-of-bounds.
#pragma once

#ifndef ERAENGINE_EMU
#define ERAENGINE_EMU 1
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <type_traits>

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned int x, y, z;
};

namespace emu {

enum CollectiveKind { kShfl = 1, kBallot = 2, kSyncwarp = 3 };

extern thread_local uint3 g_block_idx;
extern thread_local dim3 g_block_dim;
extern thread_local dim3 g_grid_dim;

const uint3& thread_idx();
void syncthreads(int line);
void* dyn_shared();
unsigned int lane_id();
// Deposits `bits` for this lane, waits until every lane of `mask` reached the same collective, and
// returns the 32 deposited values (valid until this lane's next collective).
const uint64_t* warp_exchange(int kind, unsigned int mask, uint64_t bits, int line);
[[noreturn]] void fail(const char* fmt, ...);

template <typename T>
inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type > 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T>
inline T from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}

// src lane of a shuffle; -1 means "keep my own value" (CUDA's out-of-segment rule)
template <typename T>
inline T shfl_impl(unsigned int mask, T v, int src, int line) {
    const uint64_t* vals = warp_exchange(kShfl, mask, to_bits(v), line);
    const unsigned int lane = lane_id();
    if (src < 0 || (unsigned int)src == lane) return v;
    if (!(mask & (1u << src))) fail("line %d: lane %u reads lane %d, which is outside the shuffle mask 0x%08x", line, lane, src, mask);
    return from_bits<T>(vals[src]);
}

}  // namespace emu

#define threadIdx (emu::thread_idx())
#define blockIdx (emu::g_block_idx)
#define blockDim (emu::g_block_dim)
#define gridDim (emu::g_grid_dim)
#define warpSize 32
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static thread_local
#define __align__(n) alignas(n)
#define __syncthreads() emu::syncthreads(__LINE__)
#define __syncwarp(...) emu::syncwarp_impl(__LINE__, ##__VA_ARGS__)
#define __shfl_sync(mask, v, src, ...) emu::shfl_sync_impl(__LINE__, mask, v, src, ##__VA_ARGS__)
#define __shfl_xor_sync(mask, v, m, ...) emu::shfl_xor_sync_impl(__LINE__, mask, v, m, ##__VA_ARGS__)
#define __shfl_down_sync(mask, v, d, ...) emu::shfl_down_sync_impl(__LINE__, mask, v, d, ##__VA_ARGS__)
#define __shfl_up_sync(mask, v, d, ...) emu::shfl_up_sync_impl(__LINE__, mask, v, d, ##__VA_ARGS__)
#define __ballot_sync(mask, pred) emu::ballot_sync_impl(__LINE__, mask, pred)

inline void* emu_dyn_shared() { return emu::dyn_shared(); }

namespace emu {
inline void syncwarp_impl(int line, unsigned int mask = 0xffffffffu) { (void)warp_exchange(kSyncwarp, mask, 0, line); }
template <typename T>
inline T shfl_sync_impl(int line, unsigned int mask, T v, int src, int width = 32) {
    const int lane = (int)lane_id();
    const int s = (lane & ~(width - 1)) + (src & (width - 1));
    return shfl_impl(mask, v, s, line);
}
template <typename T>
inline T shfl_xor_sync_impl(int line, unsigned int mask, T v, int lane_mask, int width = 32) {
    const int lane = (int)lane_id();
    int s = lane ^ lane_mask;
    if ((s & ~(width - 1)) != (lane & ~(width - 1))) s = -1;
    return shfl_impl(mask, v, s, line);
}
template <typename T>
inline T shfl_down_sync_impl(int line, unsigned int mask, T v, unsigned int delta, int width = 32) {
    const int lane = (int)lane_id();
    int s = lane + (int)delta;
    if ((lane & (width - 1)) + (int)delta >= width) s = -1;
    return shfl_impl(mask, v, s, line);
}
template <typename T>
inline T shfl_up_sync_impl(int line, unsigned int mask, T v, unsigned int delta, int width = 32) {
    const int lane = (int)lane_id();
    int s = lane - (int)delta;
    if ((lane & (width - 1)) - (int)delta < 0) s = -1;
    return shfl_impl(mask, v, s, line);
}
inline unsigned int ballot_sync_impl(int line, unsigned int mask, int pred) {
    const uint64_t* vals = warp_exchange(kBallot, mask, pred ? 1u : 0u, line);
    unsigned int r = 0;
    for (int l = 0; l < 32; ++l)
        if ((mask & (1u << l)) && vals[l]) r |= 1u << l;
    return r;
}
}  // namespace emu

// Math intrinsics and integer helpers of CUDA's device library.
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float a, float b) { return a / b; }
// a·b rounded to f32 and never fused into a following add (the volatile store forces the
// rounding even in the -ffp-contract=fast build), like CUDA's __fmul_rn
inline float __fmul_rn(float a, float b) {
    volatile float r = a * b;
    return r;
}
// a + b rounded to f32, like CUDA's __fadd_rn (never contracted with a neighbouring product)
inline float __fadd_rn(float a, float b) {
    volatile float r = a + b;
    return r;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// sin(πx), cos(πx): fmod by 2 is exact, as CUDA's argument reduction is
inline double sinpi(double x) { return sin(fmod(x, 2.0) * 3.14159265358979323846); }
inline double cospi(double x) { return cos(fmod(x, 2.0) * 3.14159265358979323846); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned int)(((unsigned long long)a * b) >> 32); }
inline unsigned int __float_as_uint(float x) { return emu::from_bits<unsigned int>(emu::to_bits(x)); }
inline float __uint_as_float(unsigned int x) { return emu::from_bits<float>(emu::to_bits(x)); }
inline int __float_as_int(float x) { return emu::from_bits<int>(emu::to_bits(x)); }
inline float __int_as_float(int x) { return emu::from_bits<float>(emu::to_bits(x)); }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

// Atomics: a launch runs on one OS thread and fibers switch only at barriers and collectives, so a
// read-modify-write is indivisible here.
template <typename T>
inline T atomicAdd(T* addr, T v) {
    const T old = *addr;
    *addr = old + v;
    return old;
}
template <typename T>
inline T atomicMax(T* addr, T v) {
    const T old = *addr;
    if (v > old) *addr = v;
    return old;
}
template <typename T>
inline T atomicMin(T* addr, T v) {
    const T old = *addr;
    if (v < old) *addr = v;
    return old;
}
template <typename T>
inline T atomicExch(T* addr, T v) {
    const T old = *addr;
    *addr = v;
    return old;
}
template <typename T>
inline T atomicCAS(T* addr, T cmp, T v) {
    const T old = *addr;
    if (old == cmp) *addr = v;
    return old;
}
inline void __threadfence() {}
inline void __threadfence_block() {}

// One entry per `extern "C" __global__` kernel; build.rs generates the trampolines and the table.
struct EmuKernel {
    const char* name;
    void (*entry)(const void* params);
    size_t params_size;
};
