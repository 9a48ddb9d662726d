"""The AVX-512 VNNI dot-product intrinsic the int8 conv is tensorized with.

One `vpdpbusd zmm`: C[16] (int32) += sum_k A[k] (u8, one 4-byte group broadcast to all lanes) *
B[16, k] (s8, 16 output channels x 4 reduction steps, contiguous). TVM ships the same intrinsic
as "dot_16x4_vnni" (tvm.s_tir.tensor_intrin.x86), but it is broken with LLVM 22: it passes
`<16 x i32>` operands to `llvm.x86.avx512.vpdpbusd.512`, which now takes `<64 x i8>` (module
verification fails), and its accumulator is a global buffer, so it cannot tensorize the block of
a register ("local") tile. This one reinterprets both operands as 64 bytes and takes a local
accumulator; it is registered under its own name, and importing tvm.s_tir.tensor_intrin (20-60 s:
it builds every GPU intrinsic too) is avoided.
"""
from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

VNNI_16X4 = "segdeploy_dot_16x4_u8i8i32_vnni"
LANES, GROUP = 16, 4  # int32 accumulators per zmm; u8 x s8 products summed per lane


@T.prim_func(s_tir=True)
def _desc(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (4,), "uint8", offset_factor=1)
    B = T.match_buffer(b, (16, 4), "int8", offset_factor=1)
    C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope="local")
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        for i in T.serial(0, 16):
            for k in T.serial(0, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")


@T.prim_func(s_tir=True)
def _impl(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (4,), "uint8", offset_factor=1)
    B = T.match_buffer(b, (16, 4), "int8", offset_factor=1)
    C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope="local")
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], dtype="int32x16"),
            T.reinterpret(T.broadcast(a_i32, 16), dtype="int8x64"),
            B.vload([0, 0], dtype="int8x64"),
            dtype="int32x16",
        )


TensorIntrin.register(VNNI_16X4, _desc, _impl, override=True)
