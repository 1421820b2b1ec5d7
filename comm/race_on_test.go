//go:build race

package comm_test

// raceOn: the race detector slows every operation (tests size their loops
// by it).
const raceOn = true
