package main

/*
#include <stddef.h>

// pm_ld_combine combines n long doubles: a[i] = a[i] op b[i], with comm's
// AccOp numbering; 0 if op does not apply. Done in C, where long double
// arithmetic is exact.
static int pm_ld_combine(int op, void *target, const void *origin, size_t n) {
	long double *a = target;
	const long double *b = origin;
	for (size_t i = 0; i < n; i++) {
		switch (op) {
		case 1: a[i] += b[i]; break;
		case 2: a[i] *= b[i]; break;
		case 3: if (b[i] < a[i]) a[i] = b[i]; break;
		case 4: if (b[i] > a[i]) a[i] = b[i]; break;
		default: return 0;
		}
	}
	return 1;
}

static size_t pm_ld_size(void) { return sizeof(long double); }
*/
import "C"

import (
	"unsafe"

	"github.com/pmrun/pmrun/comm"
)

// tLongDouble is C's long double as a one-sided accumulate's element type
// (pm_win_rma's dt): the collectives do not reduce it, windows do.
//
//pmrun:abi
const tLongDouble = 13

func init() {
	size := int(C.pm_ld_size())
	comm.SetCombiner(comm.ElemType(tLongDouble), size, func(op comm.AccOp, target, origin []byte) bool {
		if op > comm.OpMax {
			return false
		}
		if len(target) == 0 {
			return true
		}
		return C.pm_ld_combine(C.int(op), unsafe.Pointer(&target[0]), unsafe.Pointer(&origin[0]), C.size_t(len(target)/size)) != 0
	})
}
