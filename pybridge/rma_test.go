package main

import (
	"testing"

	"github.com/pmrun/pmrun/comm"
)

// TestAccOps: the accumulate ops Python names are comm's, and so are the
// element types (pm_reduce's dt).
func TestAccOps(t *testing.T) {
	ops := []comm.AccOp{comm.OpSum, comm.OpProd, comm.OpMin, comm.OpMax, comm.OpLand, comm.OpLor, comm.OpLxor,
		comm.OpBand, comm.OpBor, comm.OpBxor, comm.OpReplace, comm.OpNoOp}
	ours := []int{accSum, accProd, accMin, accMax, accLand, accLor, accLxor, accBand, accBor, accBxor, accReplace, accNoOp}
	for i := range ops {
		if int(ops[i]) != ours[i] {
			t.Errorf("op %d: comm %d, bridge %d", i, ops[i], ours[i])
		}
	}
	types := []comm.ElemType{comm.Int8, comm.Int16, comm.Int32, comm.Int64, comm.Uint8, comm.Uint16, comm.Uint32,
		comm.Uint64, comm.Float32, comm.Float64, comm.Complex64, comm.Complex128}
	dts := []int{tInt8, tInt16, tInt32, tInt64, tUint8, tUint16, tUint32, tUint64, tFloat32, tFloat64, tComplex64, tComplex128}
	for i := range types {
		if int(types[i]) != dts[i] {
			t.Errorf("type %d: comm %d, bridge %d", i, types[i], dts[i])
		}
	}
}
