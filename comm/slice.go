package comm

import (
	"context"
	"fmt"
	"unsafe"
)

// Number is the set of element types that typed messages carry.
type Number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~int | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~uint |
		~float32 | ~float64 | ~complex64 | ~complex128
}

// AsBytes views a numeric slice as its bytes (in the machine's byte order)
// without copying. The result aliases s.
func AsBytes[T Number](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(z)))
}

// FromBytes views b as a slice of T without copying; len(b) must be a multiple of
// the element size and b must be suitably aligned (buffers from make are).
func FromBytes[T Number](b []byte) ([]T, error) {
	var z T
	sz := int(unsafe.Sizeof(z))
	if len(b)%sz != 0 {
		return nil, fmt.Errorf("comm: %d bytes are not a whole number of %d-byte elements", len(b), sz)
	}
	if len(b) == 0 {
		return []T{}, nil
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(b)))%unsafe.Alignof(z) != 0 {
		out := make([]T, len(b)/sz)
		copy(AsBytes(out), b)
		return out, nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/sz), nil
}

// SendSlice sends the elements of s to rank dst; the bytes go out without a copy.
func SendSlice[T Number](ctx context.Context, c *Comm, dst, tag int, s []T) error {
	return c.Send(ctx, dst, tag, AsBytes(s))
}

// IsendSlice starts sending s; s must not change until the request completes.
func IsendSlice[T Number](ctx context.Context, c *Comm, dst, tag int, s []T) *Request {
	return c.Isend(ctx, dst, tag, AsBytes(s))
}

// RecvSlice receives a message of elements of T into a new slice.
func RecvSlice[T Number](ctx context.Context, c *Comm, src, tag int) ([]T, Status, error) {
	b, st, err := c.Recv(ctx, src, tag)
	if err != nil {
		return nil, st, err
	}
	s, err := FromBytes[T](b)
	if err != nil {
		return nil, st, &RankError{Op: "recv", Rank: st.Source, Tag: st.Tag, Err: err}
	}
	return s, st, nil
}

// RecvSliceInto receives a message straight into the elements of buf and returns
// how many elements arrived; a larger message fails with ErrTruncated.
func RecvSliceInto[T Number](ctx context.Context, c *Comm, src, tag int, buf []T) (int, Status, error) {
	st, err := c.RecvInto(ctx, src, tag, AsBytes(buf))
	var z T
	return st.Count / int(unsafe.Sizeof(z)), st, err
}

// IrecvSlice starts receiving into the elements of buf.
func IrecvSlice[T Number](ctx context.Context, c *Comm, src, tag int, buf []T) *Request {
	return c.Irecv(ctx, src, tag, AsBytes(buf))
}
