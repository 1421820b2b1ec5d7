// Package comm is pmrun's message passing layer: communicators, rank-addressed
// point-to-point messages with MPI semantics, and the transports beneath them.
//
// A program started by `pmrun -np N ./prog` gets its world communicator from
// World; the same program run alone is a world of one rank.
//
//	c, err := comm.World()
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer c.Close()
//	ctx := context.Background()
//	if c.Rank() == 0 {
//		err = c.Send(ctx, 1, 7, []byte("hello"))
//	} else if c.Rank() == 1 {
//		data, st, err := c.Recv(ctx, 0, 7) // or comm.AnySource, comm.AnyTag
//		fmt.Println(string(data), st.Source, st.Tag, st.Count, err)
//	}
//
// Semantics are MPI's. Messages from one rank to another on one communicator that
// match the same receive arrive in the order they were sent (non-overtaking). A
// receive into a buffer too small for the message fails with ErrTruncated. Tags
// are >= 0; AnySource and AnyTag are wildcards; tags below -1 are reserved for
// libraries such as package collective and never match AnyTag. Communicators made
// by Dup and Split have their own context, so their traffic never mixes with the
// parent's.
//
// Communicators may be used from many goroutines at once: any call on
// any communicator may come from any goroutine, concurrently with other calls
// on the same or other communicators (MPI_THREAD_MULTIPLE, the thread level the
// Python layer's Init_thread and Query_thread report). Ordering is MPI's for
// threads: non-overtaking holds per sending goroutine, communicator and tag.
// The messages one goroutine sends to one rank on one communicator with one tag
// match receives in the order it sent them, and the receives one goroutine posts
// are matched in the order it posted them; messages that different goroutines
// of a rank send to one destination on the same communicator and tag have no
// defined relative order. Dup, Split, SplitByNode and CreateGroup are
// collective, so every rank must call them on a communicator in the same
// order: make the communicators goroutines will use before starting them. A
// goroutine with a communicator (or tags) of its own sees exactly the
// single-goroutine semantics. Close ends a communicator for all its goroutines;
// call it once they are done.
//
// Every blocking call takes a context: cancelling it withdraws the operation and
// returns an error wrapping ctx.Err(). Errors of rank-addressed calls are
// *RankError values naming the operation, rank and tag; a peer that died or
// disconnected yields an error matching ErrPeerLost.
//
// Messages up to Config.EagerLimit bytes (ShmEagerLimit through shared memory)
// are sent at once; larger ones use a
// rendezvous: the sender announces the message, the receiver answers once a
// matching receive is posted, and the data then moves straight into the posted
// buffer. An unexpected flood of large messages therefore costs only their
// announcements in memory.
//
// Ranks in different processes talk over TCP, one connection per pair, opened by
// a handshake that proves knowledge of the job secret (strangers are refused and
// logged). NewLocalWorld connects ranks that are goroutines of one process
// without sockets; package commtest builds test worlds on it.
//
// Ranks of one node may also share memory: AllocShared maps one region in
// every rank of a communicator from SplitByNode, each rank's part in rank
// order, read and written in place (SharedSlice views it as numbers).
package comm
