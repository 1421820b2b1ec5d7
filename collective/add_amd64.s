#include "textflag.h"

// The element-wise sums of Sum with AVX2: dst[i] += src[i] over n bytes, a
// multiple of 128, 128 bytes an iteration. Each lane is one element's
// addition, as the scalar loop makes it: the results are the same bits.

#define ADDLOOP(LOAD, ADD, STORE) \
	MOVQ dst+0(FP), DI \
	MOVQ src+8(FP), SI \
	MOVQ n+16(FP), CX \
	SHRQ $7, CX \
	JZ   done \
loop: \
	LOAD 0(DI), Y0 \
	LOAD 32(DI), Y1 \
	LOAD 64(DI), Y2 \
	LOAD 96(DI), Y3 \
	ADD  0(SI), Y0, Y0 \
	ADD  32(SI), Y1, Y1 \
	ADD  64(SI), Y2, Y2 \
	ADD  96(SI), Y3, Y3 \
	STORE Y0, 0(DI) \
	STORE Y1, 32(DI) \
	STORE Y2, 64(DI) \
	STORE Y3, 96(DI) \
	ADDQ $128, SI \
	ADDQ $128, DI \
	DECQ CX \
	JNZ  loop \
	VZEROUPPER \
done: \
	RET

// func addF64(dst, src unsafe.Pointer, n uintptr)
TEXT ·addF64(SB), NOSPLIT, $0-24
	ADDLOOP(VMOVUPD, VADDPD, VMOVUPD)

// func addF32(dst, src unsafe.Pointer, n uintptr)
TEXT ·addF32(SB), NOSPLIT, $0-24
	ADDLOOP(VMOVUPS, VADDPS, VMOVUPS)

// func addI64(dst, src unsafe.Pointer, n uintptr)
TEXT ·addI64(SB), NOSPLIT, $0-24
	ADDLOOP(VMOVDQU, VPADDQ, VMOVDQU)

// func addI32(dst, src unsafe.Pointer, n uintptr)
TEXT ·addI32(SB), NOSPLIT, $0-24
	ADDLOOP(VMOVDQU, VPADDD, VMOVDQU)
