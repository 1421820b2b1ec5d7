package node

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// A task hub on a cluster: one task session (see tasks.go) per live node.

// hubNode is an agent's task session, as the hub holds it.
type hubNode struct {
	name    string
	control string
	sess    *yamux.Session
	ctl     *jsonStream
}

// startCluster opens a task session to every live node of the cluster; it
// returns their stop.
func (h *hub) startCluster(ctx context.Context) func() {
	cfg := h.cfg
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ts, err := clusterNodes(dctx, &ClusterSpec{JobSpec: JobSpec{TLS: cfg.TLS}, Cluster: cfg.Cluster, Key: cfg.Key})
	cancel()
	if err != nil {
		h.fail(err.Error())
		return nil
	}
	var bundle []byte
	if cfg.Files != "" {
		var b bytes.Buffer
		if err := writeBundle(&b, "", "", cfg.Files, false); err != nil {
			h.fail(err.Error())
			return nil
		}
		bundle = b.Bytes()
	}
	spec := &taskSpec{Workers: cfg.Workers, Requirements: cfg.Requirements, Files: bundle != nil, Env: cfg.Env,
		Cmd: cfg.WorkerCmd}
	var nodes []*hubNode
	var mu sync.Mutex // guards nodes, pending and total
	pending, total := len(ts), 0
	settled := func(started int) { // a node started its workers, or failed
		mu.Lock()
		defer mu.Unlock()
		pending--
		total += started
		if pending == 0 {
			if total == 0 {
				h.fail("no node of the cluster started task workers")
				return
			}
			h.emit(hubEvent{Event: "ready", Workers: total})
		}
	}
	for _, t := range ts {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			n := &hubNode{name: t.name, control: t.control}
			if err := h.open(n, spec, bundle); err != nil {
				h.emit(hubEvent{Event: "progress", Message: fmt.Sprintf("node %s: %v", t.name, err)})
				settled(0)
				return
			}
			mu.Lock()
			nodes = append(nodes, n)
			mu.Unlock()
			select {
			case <-h.quit: // stopped while connecting: nobody closes its session
				n.sess.Close()
				settled(0)
				return
			default:
			}
			h.runNode(n, settled)
		}()
	}
	return func() {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range nodes {
			n.sess.Close() // the agent kills the workers
		}
	}
}

// open starts a task session on node n.
func (h *hub) open(n *hubNode, spec *taskSpec, bundle []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s, err := dialControl(ctx, n.control, h.cfg.Key, h.cfg.TLS)
	cancel()
	if err != nil {
		return err
	}
	st, err := s.Open()
	if err == nil {
		err = writeRequest(st, &request{Op: "tasks", Tasks: spec})
	}
	if err == nil && bundle != nil {
		err = sendBundle(st, bundle)
	}
	if err != nil {
		s.Close()
		return err
	}
	n.sess, n.ctl = s, newJSONStream(st, 0)
	return nil
}

// runNode relays node n's events and accepts its streams until its session
// ends; settled is called once, when its first workers run or it failed.
func (h *hub) runNode(n *hubNode, settled func(started int)) {
	var streams sync.WaitGroup
	defer streams.Wait()
	streams.Add(1)
	go func() {
		defer streams.Done()
		h.acceptStreams(n, &streams)
	}()
	announced := map[int]bool{}
	isSettled := false
	defer func() {
		if !isSettled {
			settled(0)
		}
	}()
	for {
		var ev event
		if err := n.ctl.read(&ev); err != nil {
			select {
			case <-h.quit:
			default:
				reason := fmt.Sprintf("node %s lost: %s", n.name, lostReason(n.sess, err))
				for seq := range announced {
					h.lose(n.name+"/"+strconv.Itoa(seq), reason)
				}
				if !isSettled {
					h.emit(hubEvent{Event: "progress", Message: reason})
				}
			}
			n.sess.Close()
			return
		}
		id := n.name + "/" + strconv.Itoa(ev.Worker)
		switch ev.Ev {
		case "progress":
			h.emit(hubEvent{Event: "progress", Message: fmt.Sprintf("node %s: Python environment: %s", n.name, ev.Msg)})
		case "worker":
			if h.remote(id) == nil {
				continue // lost already (cannot be: the agent reports in order)
			}
			announced[ev.Worker] = true
			h.emit(hubEvent{Event: "worker", ID: id, Node: n.name, Pid: ev.Pid})
		case "lost":
			delete(announced, ev.Worker)
			h.lose(id, ev.Msg)
		case "started":
			isSettled = true
			settled(ev.Code)
		case "error":
			h.fail(ev.Msg)
		}
	}
}

// acceptStreams takes the streams node n opens: workers' and their output.
func (h *hub) acceptStreams(n *hubNode, streams *sync.WaitGroup) {
	for {
		st, err := n.sess.Accept()
		if err != nil {
			return
		}
		req, err := readRequest(st, 0)
		if err != nil {
			st.Close()
			continue
		}
		id := n.name + "/" + strconv.Itoa(req.Rank)
		switch req.Op {
		case "worker":
			if w := h.remote(id); w != nil {
				w.setStream(st)
			} else {
				st.Close()
			}
		case "output":
			streams.Add(1)
			go func() {
				defer streams.Done()
				defer st.Close()
				forwardLines(st, h.errs, nil)
			}()
		default:
			st.Close()
		}
	}
}
