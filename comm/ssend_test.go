package comm_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pmrun/pmrun/comm"
)

// TestSsendBlocks: a blocking Ssend does not return before the matching
// receive is posted, even once its message has reached the receiver. Rank 1
// waits until the message can be probed, tells rank 0, and posts its receive
// only when rank 0, having seen that its Ssend is still blocked, says so:
// a correct Ssend cannot have returned at that check, whatever the timing.
func TestSsendBlocks(t *testing.T) {
	const arrived, post = 1, 2 // tags of the two signals
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 2, smallEager())
		w.Run(func(c *comm.Comm) error {
			var errs []error
			for i, n := range []int{0, 5, 100 << 10} {
				tag := 10 + i
				if c.Rank() == 1 {
					st, err := c.Probe(bg, 0, tag)
					if err != nil || st.Count != n {
						return fmt.Errorf("probe of %d bytes: %+v %v", n, st, err)
					}
					if err := c.Send(bg, 0, arrived, nil); err != nil {
						return err
					}
					if _, _, err := c.Recv(bg, 0, post); err != nil {
						return err
					}
					got, st, err := c.Recv(bg, 0, tag)
					if err != nil || !bytes.Equal(got, pattern(n, n)) {
						return fmt.Errorf("recv of %d bytes: %d bytes, %v", n, st.Count, err)
					}
					continue
				}
				returned := make(chan error, 1)
				go func() { returned <- c.Ssend(bg, 1, tag, pattern(n, n)) }()
				if _, _, err := c.Recv(bg, 1, arrived); err != nil {
					return err
				}
				early := len(returned) > 0 // Ssend has returned (checked before rank 1 may post)
				if err := c.Send(bg, 1, post, nil); err != nil {
					return err
				}
				select {
				case err := <-returned:
					if err != nil {
						return fmt.Errorf("Ssend of %d bytes: %w", n, err)
					}
				case <-time.After(time.Minute):
					return fmt.Errorf("Ssend of %d bytes still blocked a minute after its receive", n)
				}
				if early { // carry on, so that rank 1 is not left waiting
					errs = append(errs, fmt.Errorf("Ssend of %d bytes returned before the receive was posted", n))
				}
			}
			return errors.Join(errs...)
		})
	})
}
