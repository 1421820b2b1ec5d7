package comm

import "sync"

// attrs is what libraries cache on a communicator (MPI's attribute caching):
// values under keys of their own, each with a destructor that Close runs, so
// that per-communicator state dies with the communicator instead of living on
// in a package-level map keyed by it.
type attrs struct {
	m     sync.Map // key -> *attr; read on every collective call, hence lock-free
	mu    sync.Mutex
	order []any // keys in the order they were stored: destructors run in reverse
	freed bool
}

type attr struct {
	v    any
	free func(any)
}

// Attr returns the value cached on c under key, if any.
func (c *Comm) Attr(key any) (any, bool) {
	a, ok := c.attrs.m.Load(key)
	if !ok {
		return nil, false
	}
	return a.(*attr).v, true
}

// LoadOrStoreAttr caches v on c under key, with free (nil for none) to run on
// v when c is closed, unless key already holds a value: then that value is
// returned with loaded set, and v and free are dropped. Keys are compared as
// map keys; a package should use an unexported type of its own. On a closed
// communicator free runs on v at once.
func (c *Comm) LoadOrStoreAttr(key, v any, free func(any)) (actual any, loaded bool) {
	if a, ok := c.attrs.m.Load(key); ok {
		return a.(*attr).v, true
	}
	c.attrs.mu.Lock()
	if a, ok := c.attrs.m.Load(key); ok {
		c.attrs.mu.Unlock()
		return a.(*attr).v, true
	}
	if c.attrs.freed {
		c.attrs.mu.Unlock()
		if free != nil {
			free(v)
		}
		return v, false
	}
	c.attrs.m.Store(key, &attr{v: v, free: free})
	c.attrs.order = append(c.attrs.order, key)
	c.attrs.mu.Unlock()
	return v, false
}

// freeAttrs drops every cached value, running the destructors in the reverse
// order of storing, once.
func (c *Comm) freeAttrs() {
	c.attrs.mu.Lock()
	order := c.attrs.order
	c.attrs.order, c.attrs.freed = nil, true
	c.attrs.mu.Unlock()
	for i := len(order) - 1; i >= 0; i-- {
		a, _ := c.attrs.m.LoadAndDelete(order[i])
		if f := a.(*attr).free; f != nil {
			f(a.(*attr).v)
		}
	}
}
