/* pmrun._fast: the hot calls of pmrun.MPI without ctypes.
 *
 * The calls that a program makes in its loops (Send, Recv, send, recv, Bcast,
 * Gather, Scatter, Allreduce) resolve their buffers with the buffer protocol
 * and call the runtime library's functions directly, with the interpreter's
 * lock released while they block. The library is the one _bridge loaded:
 * bind() receives the addresses of its functions, so both paths call the same
 * copy of the runtime.
 *
 * Each buffer call returns True once done, or False when its arguments are not
 * plain contiguous buffers (a [buf, count, TYPE] list, None, IN_PLACE, a
 * derived datatype, an invalid handle...): the caller then takes the ctypes
 * path, which resolves them and gives mpi4py's errors. A negative result of
 * the runtime is raised through the function given to bind(). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
static inline PyObject *Py_XNewRef(PyObject *o)
{
    Py_XINCREF(o);
    return o;
}
#endif
#if PY_VERSION_HEX < 0x03090000
#define PyObject_CallOneArg(f, a) PyObject_CallFunctionObjArgs((f), (a), NULL)
#endif

typedef int64_t i64;

static i64 (*pm_send)(i64, i64, i64, void *, i64, i64);
static i64 (*pm_sendv)(i64, i64, i64, void *, void *, i64, i64);
static i64 (*pm_recv)(i64, i64, i64, void *, i64, void *);
static i64 (*pm_recv_obj)(i64, i64, i64, void *, i64, void *);
static i64 (*pm_recv_any)(i64, i64, i64, void *, i64, void *, i64 *);
static i64 (*pm_isend)(i64, i64, i64, void *, i64, i64, i64 *);
static i64 (*pm_isend_now)(i64, i64, i64, void *, i64);
static i64 (*pm_irecv)(i64, i64, i64, void *, i64, i64 *);
static i64 (*pm_wait)(i64, void *);
static void (*pm_req_free)(i64);
static i64 (*pm_bcast)(i64, i64, void *, i64, i64, i64 *);
static i64 (*pm_gather)(i64, i64, void *, i64, i64, void *, i64, i64, i64 *);
static i64 (*pm_gatherv)(i64, i64, void *, i64, i64, void *, i64, i64 *, i64 *, i64, i64, i64 *);
static i64 (*pm_scatterv)(i64, i64, void *, i64, i64 *, i64 *, i64, void *, i64, i64, i64 *);
static i64 (*pm_alltoallv)(i64, void *, i64, i64 *, i64 *, void *, i64, i64 *, i64 *, i64, i64 *);
static i64 (*pm_scatter)(i64, i64, void *, i64, void *, i64, i64, i64 *);
static i64 (*pm_bcast_obj)(i64, i64, void *, i64, i64 *, i64 *);
static i64 (*pm_blob_take)(i64, void *, i64);
static i64 (*pm_alltoall_obj)(i64, void *, void *, void *, i64, void *, i64, i64 *);
static i64 (*pm_scatter_obj)(i64, i64, void *, void *, i64, void *, i64, i64 *, i64 *);
static i64 (*pm_gather_obj)(i64, i64, i64, void *, i64, void *, i64, void *, i64, i64 *);
static i64 (*pm_barrier)(i64, i64 *);
static i64 (*pm_waitall)(i64 *, i64);
static i64 (*pm_waitall_done)(i64 *, i64, i64 *);
static i64 (*pm_test_done)(i64, i64 *, i64 *);
static i64 (*pm_testall_done)(i64 *, i64, i64 *, i64 *);
static i64 (*pm_waitany)(i64 *, i64, i64 *, i64 *);
static i64 (*pm_wait_data)(i64, i64 *, void *, i64);
static i64 (*pm_req_data)(i64, void *, i64);
static i64 (*pm_alltoall)(i64, void *, i64, void *, i64, i64, i64 *);
static i64 (*pm_iprobe)(i64, i64, i64, i64 *, i64 *);
static i64 (*pm_probe)(i64, i64, i64, i64 *);
static i64 (*pm_sendrecv)(i64, void *, i64, i64, i64, void *, i64, i64, i64, void *);
static i64 (*pm_reduce)(i64, i64, i64, void *, i64, void *, i64, i64, void *, i64, i64, i64, i64 *);
static void (*pm_threads)(i64);
static i64 (*pm_posts_area)(i64 *, i64 *);
static void (*pm_req_reserve)(i64, i64 *);

static PyObject *raise_rc;  /* raise_rc(rc) raises the runtime's error rc */
static PyObject *dumps;     /* dumps(obj) -> list of message parts */
static PyObject *loads;     /* loads(memoryview) -> object */
static PyObject *joined;    /* joined(parts) -> one bytes object */
static PyObject *typecode;  /* typecode(format, itemsize, op) -> Go type code or 0 */
static PyObject *pk_dumps, *pk_loads, *five; /* the standard pickle's, and 5 */
static PyObject *release_name;                /* "release", a memoryview's method */
static PyObject *oob_cb, *buffer_callback_kw;  /* found_buffer, and ("buffer_callback",) */
static int std_pickle;      /* MPI.pickle is the standard pickle with protocol 5 */
static i64 proc_null = -2, red_allreduce = 1, red_scatter_block = 4, red_scatter = 5;
static PyObject *op_type, *in_place; /* see bind_types */
static PyTypeObject *request_type;    /* MPI.Request, see bind_types */
static PyObject *empty;               /* () */
static int bound;
static PyObject *s_source, *s_tag, *s_count, *s_error, *s_user, *s_code;
static PyObject *s_size, *s_blocks;
static PyObject *s_h, *s_hh, *s_kind, *s_done, *s_keep, *s_status, *s_obj, *k_send, *k_buf, *k_coll, *k_obj, *zero;
static PyObject *general; /* wait_req's "take the general path" */

/* Receives posted lazily (see pybridge/posts.go): an Irecv of a small
 * buffer, or an object's irecv (of any size: ANY_SIZE), is written into the
 * runtime's list pm_posts, under a handle set apart for it, rather than
 * posted; its wait, when it is still the list's last entry, takes it back
 * and receives the message directly (one call into the runtime where the
 * post and the wait were two). Any other call of the runtime that may match
 * a message posts the list first. The layout is pybridge/posts.h's;
 * pm_posts_area gives its size, which must be this one's, or nothing is
 * posted lazily. */
#define PM_POSTS 32
typedef struct {
    i64 req, comm, src, tag;
    void *buf;
    i64 cap;
} pm_post;
typedef struct {
    uint32_t lock, n;
    pm_post p[PM_POSTS];
} pm_posts_t;
#define ANY_SIZE (-1)  /* a cap: an object's receive, of any size */
static pm_posts_t *posts; /* NULL: post every receive as it starts */
static i64 lazy_limit;    /* the largest buffer of a lazy receive */
#define STASH 32
static i64 stash[STASH];  /* handles set apart (under the GIL) */
static int nstash;

static void posts_lock(void)
{
    uint32_t unlocked = 0;
    while (!__atomic_compare_exchange_n(&posts->lock, &unlocked, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        unlocked = 0;
}

static void posts_unlock(void)
{
    __atomic_store_n(&posts->lock, 0, __ATOMIC_RELEASE);
}

/* Writes a receive into the list: 1 with its handle in *req, or 0 when it
 * must be posted now (the list is full). */
static int post_lazily(i64 h, i64 src, i64 tag, void *buf, i64 cap, i64 *req)
{
    if (nstash == 0) {
        pm_req_reserve(STASH, stash);
        nstash = STASH;
    }
    posts_lock();
    uint32_t n = posts->n;
    if (n == PM_POSTS) {
        posts_unlock();
        return 0;
    }
    *req = stash[--nstash];
    posts->p[n] = (pm_post){*req, h, src, tag, buf, cap};
    __atomic_store_n(&posts->n, n + 1, __ATOMIC_RELEASE);
    posts_unlock();
    return 1;
}

/* Takes request handle req's receive back out of the list into *e when it
 * is the last entry: 1, else 0 (it was posted, or others follow it). */
static int take_back(i64 req, pm_post *e)
{
    if (posts == NULL || __atomic_load_n(&posts->n, __ATOMIC_ACQUIRE) == 0)
        return 0;
    posts_lock();
    uint32_t n = posts->n;
    int mine = n > 0 && posts->p[n - 1].req == req;
    if (mine) {
        *e = posts->p[n - 1];
        __atomic_store_n(&posts->n, n - 1, __ATOMIC_RELEASE);
    }
    posts_unlock();
    return mine;
}

/* Gives back the handle of a lazy receive taken back (under the GIL). */
static void unreserve(i64 req)
{
    if (nstash < STASH)
        stash[nstash++] = req;
    else
        pm_req_free(req);
}

static PyObject *pickled(PyObject *obj);
static PyObject *pickled_joined(PyObject *obj, Py_buffer *v);

#define SCRATCH (128 * 1024) /* an object message this small is received without a probe */
static pthread_key_t scratch_key;

static int fail(i64 rc)
{
    PyObject *r = PyObject_CallFunction(raise_rc, "L", (long long)rc);
    Py_XDECREF(r);
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_RuntimeError, "pmrun: error %lld", (long long)rc);
    return -1;
}

/* Whether an empty view v is refused where empty says which the call
 * takes: 0, none; 1, any (point to point); 2, those with an address (the
 * collectives, which read no address as MPI.IN_PLACE; an empty array may
 * export none). */
static int empty_refused(const Py_buffer *v, int empty)
{
    return !empty || (empty == 2 && v->buf == NULL);
}

/* A contiguous buffer of obj, or 0 (no error set) when obj is not one, or
 * is empty and empty_refused. */
static int bufview(PyObject *obj, Py_buffer *v, int writable, int empty)
{
    if (obj == Py_None || PyList_Check(obj) || PyTuple_Check(obj))
        return 0;
    if (PyObject_GetBuffer(obj, v, PyBUF_ANY_CONTIGUOUS | PyBUF_FORMAT |
                                       (writable ? PyBUF_WRITABLE : 0)) != 0) {
        PyErr_Clear();
        return 0;
    }
    if (v->len == 0 && empty_refused(v, empty)) {
        PyBuffer_Release(v);
        return 0;
    }
    return 1;
}

static int rawbuf(PyObject *obj, Py_buffer *v, int writable)
{
    return bufview(obj, v, writable, 0);
}

/* The predefined datatypes (bind_datatypes) and their sizes: a message of
 * one of them needs no packing, only its length. Held for good: they are
 * the module's constants. */
#define MAX_PREDEF 96
static PyObject *predef[MAX_PREDEF];
static long long predef_size[MAX_PREDEF];
static int n_predef;

static long long predef_of(PyObject *t)
{
    for (int i = 0; i < n_predef; i++)
        if (predef[i] == t)
            return predef_size[i];
    return 0;
}

/* The message of obj: a contiguous buffer (rawbuf), or mpi4py's
 * [buf, count, TYPE] or [buf, TYPE] of a predefined TYPE: count elements of
 * it in each of blocks blocks (a collective's count counts one block, as in
 * mpi4py; 1 elsewhere), or every whole element of buf. The view's length is
 * then the message's, in bytes. 0 (no error set) leaves the call to the
 * general path: any other spec, a count the buffer cannot hold, a length
 * that is not whole elements (whose errors the general path raises), an
 * empty message unless empty (see bufview). */
static int getmsg(PyObject *obj, Py_buffer *v, int writable, long long blocks, int empty)
{
    if (!PyList_Check(obj) && !PyTuple_Check(obj))
        return bufview(obj, v, writable, empty);
    Py_ssize_t k = PySequence_Fast_GET_SIZE(obj);
    if (k != 2 && k != 3)
        return 0;
    PyObject **it = PySequence_Fast_ITEMS(obj);
    long long ts = predef_of(it[k - 1]), count = -1;
    if (ts <= 0 || blocks <= 0)
        return 0;
    if (k == 3) {
        if (!PyLong_CheckExact(it[1]))
            return 0;
        count = PyLong_AsLongLong(it[1]);
        if (count < 0) {
            PyErr_Clear();
            return 0;
        }
    }
    if (!bufview(it[0], v, writable, empty))
        return 0;
    long long n = v->len;
    if (count < 0 ? n % ts != 0 : count > n / ts / blocks) {
        PyBuffer_Release(v);
        return 0;
    }
    if (count >= 0)
        n = count * ts * blocks;
    if (n == 0 && empty_refused(v, empty)) {
        PyBuffer_Release(v);
        return 0;
    }
    v->len = n;
    v->itemsize = 1;
    v->format = NULL;
    return 1;
}

/* bind_datatypes(types, sizes): the predefined datatypes whose messages
 * getmsg takes, and their sizes in bytes. */
static PyObject *f_bind_datatypes(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    if (n != 2 || !PyList_Check(args[0]) || !PyList_Check(args[1]) ||
        PyList_GET_SIZE(args[0]) != PyList_GET_SIZE(args[1]) || PyList_GET_SIZE(args[0]) > MAX_PREDEF) {
        PyErr_SetString(PyExc_TypeError, "bind_datatypes(types, sizes): two lists of one length, at most 96");
        return NULL;
    }
    long long sizes[MAX_PREDEF];
    Py_ssize_t k = PyList_GET_SIZE(args[0]);
    for (Py_ssize_t i = 0; i < k; i++) {
        sizes[i] = PyLong_AsLongLong(PyList_GET_ITEM(args[1], i));
        if (sizes[i] <= 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "bind_datatypes: a size is not positive");
            return NULL;
        }
    }
    for (int i = 0; i < n_predef; i++)
        Py_CLEAR(predef[i]);
    for (Py_ssize_t i = 0; i < k; i++) {
        predef[i] = Py_NewRef(PyList_GET_ITEM(args[0], i));
        predef_size[i] = sizes[i];
    }
    n_predef = (int)k;
    Py_RETURN_NONE;
}

static int set_status(PyObject *status, const i64 st[4])
{
    if (status == Py_None)
        return 0;
    const i64 vals[4] = {st[0], st[1], st[2], st[3]};
    PyObject *names[4] = {s_source, s_tag, s_count, s_error};
    for (int i = 0; i < 4; i++) {
        PyObject *v = PyLong_FromLongLong(vals[i]);
        if (v == NULL || PyObject_SetAttr(status, names[i], v) != 0) {
            Py_XDECREF(v);
            return -1;
        }
        Py_DECREF(v);
    }
    return 0;
}

static PyObject *done(i64 rc)
{
    if (rc < 0 && fail(rc) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

/* The threads that have called into the runtime: a second one makes it
 * run Go code on two threads at once (pm_threads). */
static int threads_seen;
static __thread int thread_seen;

static void note_thread(void)
{
    if (thread_seen)
        return;
    thread_seen = 1;
    int n = __atomic_add_fetch(&threads_seen, 1, __ATOMIC_RELAXED);
    if (n == 2 && pm_threads != NULL)
        pm_threads(n);
}

/* The k leading integer arguments of a call of want arguments into v: 1; 0
 * (no error set) when one is not an int, for the general path to say what is
 * wrong; -1 with an error for a wrong count or before bind(). */
static int leading(const char *name, PyObject *const *args, Py_ssize_t n, Py_ssize_t want, int k,
                   long long *v)
{
    note_thread();
    if (!bound) {
        PyErr_SetString(PyExc_RuntimeError, "pmrun._fast: bind() was not called");
        return -1;
    }
    if (n != want) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments (%zd given)", name, want, n);
        return -1;
    }
    for (int i = 0; i < k; i++) {
        /* any integer (numpy's too, through __index__), or a float
         * truncated, as mpi4py takes ranks and tags */
        if (PyFloat_Check(args[i]))
            v[i] = (long long)PyFloat_AS_DOUBLE(args[i]);
        else
            v[i] = PyLong_AsLongLong(args[i]);
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* The k leading integer arguments of a call that has no general path to
 * fall back on: 0, or -1 with an error set. */
static int strict(const char *name, PyObject *const *args, Py_ssize_t n, Py_ssize_t want, int k,
                  long long *v)
{
    int ok = leading(name, args, n, want, k, v);
    if (ok == 0)
        PyErr_Format(PyExc_TypeError, "an integer is required (%s: its first %d arguments)", name,
                     k);
    return ok > 0 ? 0 : -1;
}

/* Parses the k leading integers of want arguments into a[], returning False
 * (the general path) when they are not ints. */
#define ARGS(name, want, k)                                            \
    long long a[k];                                                    \
    switch (leading(name, args, n, want, k, a)) {                      \
    case -1:                                                           \
        return NULL;                                                   \
    case 0:                                                            \
        Py_RETURN_FALSE;                                               \
    }

/* send(h, dest, tag, sync, buf) */
static PyObject *f_send(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    ARGS("send", 5, 4);
    Py_buffer v;
    if (a[0] == 0 || a[1] == proc_null || !getmsg(args[4], &v, 0, 1, 1))
        Py_RETURN_FALSE;
    i64 rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pm_send(a[0], a[1], a[2], v.buf, v.len, a[3]);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&v);
    return done(rc);
}

/* recv(h, source, tag, buf, status) */
static PyObject *f_recv(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    ARGS("recv", 5, 3);
    Py_buffer v;
    if (a[0] == 0 || a[1] == proc_null || !getmsg(args[3], &v, 1, 1, 1))
        Py_RETURN_FALSE;
    i64 st[4] = {0, 0, 0, 0}, rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pm_recv(a[0], a[1], a[2], v.buf, v.len, st);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&v);
    if (set_status(args[4], st) < 0)
        return NULL;
    return done(rc);
}

/* sendrecv(h, dest, sendtag, source, recvtag, sendbuf, recvbuf, status):
 * Sendrecv of two buffers in one call into the runtime. */
static PyObject *f_sendrecv(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    ARGS("sendrecv", 8, 5);
    Py_buffer sv, rv;
    if (a[0] == 0 || a[1] == proc_null || a[3] == proc_null || !getmsg(args[5], &sv, 0, 1, 1))
        Py_RETURN_FALSE;
    if (!getmsg(args[6], &rv, 1, 1, 1)) {
        PyBuffer_Release(&sv);
        Py_RETURN_FALSE;
    }
    i64 st[4] = {0, 0, 0, 0}, rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pm_sendrecv(a[0], sv.buf, sv.len, a[1], a[2], rv.buf, rv.len, a[3], a[4], st);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&sv);
    PyBuffer_Release(&rv);
    if (set_status(args[7], st) < 0)
        return NULL;
    return done(rc);
}

/* A pending request's buffer, exported for as long as this object lives
 * (the request holds it), and the request's handle (h). */
typedef struct {
    PyObject_HEAD
    Py_buffer view, view2; /* view2: a collective's second buffer */
    long long h;
} Held;

static Held *held_new(Py_buffer *a, Py_buffer *b);

/* [(handle, owner)]: requests freed or dropped before their operation
 * completed; the owner (a Held, or _mpi_requests._Owned) keeps the buffers
 * the runtime still reads or writes, until the operation is done. Shared
 * with _mpi_requests._orphans. */
static PyObject *orphans;

/* reap_orphans lets go of the orphans whose operations are done. */
static void reap_orphans(void)
{
    for (Py_ssize_t i = PyList_GET_SIZE(orphans) - 1; i >= 0; i--) {
        PyObject *t = PyList_GET_ITEM(orphans, i);
        long long h = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 0));
        i64 flag = 0, st[4] = {0, 0, 0, 0};
        i64 rc = pm_test_done(h, &flag, st);
        if (rc == 0 && !flag)
            continue; /* still running */
        if (rc != 0 || st[3] != 0)
            pm_req_free(h); /* failed: pm_test_done kept the handle */
        if (PyObject_SetAttr(PyTuple_GET_ITEM(t, 1), s_hh, zero) < 0)
            PyErr_Clear();
        if (PyList_SetSlice(orphans, i, i + 1, NULL) < 0)
            PyErr_Clear();
    }
}

static void held_dealloc(Held *self)
{
    if (self->h > 0 && orphans != NULL) {
        /* Its request went before it was waited for. Done: the handle goes
         * too; still running: a new Held takes the buffers and the handle
         * over, among the orphans, so that the runtime never touches
         * memory that was given back. */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        reap_orphans();
        i64 flag = 0, st[4] = {0, 0, 0, 0};
        i64 rc = pm_test_done(self->h, &flag, st);
        if (rc == 0 && !flag) {
            Held *o = held_new(&self->view, &self->view2);
            PyObject *t = o == NULL ? NULL : Py_BuildValue("(LO)", self->h, (PyObject *)o);
            if (t != NULL && PyList_Append(orphans, t) == 0) {
                o->h = self->h; /* the views moved to o */
                memset(&self->view, 0, sizeof self->view);
                memset(&self->view2, 0, sizeof self->view2);
            } else if (o != NULL) {
                /* No room to keep it: leak the views rather than free them. */
                memset(&o->view, 0, sizeof o->view);
                memset(&o->view2, 0, sizeof o->view2);
                memset(&self->view, 0, sizeof self->view);
                memset(&self->view2, 0, sizeof self->view2);
            }
            Py_XDECREF(t);
            Py_XDECREF(o);
            PyErr_Clear();
        } else if (rc != 0 || st[3] != 0) {
            pm_req_free(self->h); /* failed: its handle was kept */
        }
        self->h = 0;
        PyErr_Restore(et, ev, tb);
    } else if (self->h > 0) {
        pm_req_free(self->h);
    }
    if (self->view.obj != NULL)
        PyBuffer_Release(&self->view);
    if (self->view2.obj != NULL)
        PyBuffer_Release(&self->view2);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef held_members[] = {
    {"h", T_LONGLONG, offsetof(Held, h), 0, "the request's handle, freed with this object unless 0"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject HeldType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pmrun._fast.Held",
    .tp_basicsize = sizeof(Held),
    .tp_dealloc = (destructor)held_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "a pending request's buffer, held exported, and the owner of its handle",
    .tp_members = held_members,
};

/* A new Held, with no handle, holding the views a and b (moved in; either
 * may be NULL). */
static Held *held_new(Py_buffer *a, Py_buffer *b)
{
    Held *held = PyObject_New(Held, &HeldType);
    if (held == NULL)
        return NULL;
    held->h = 0;
    memset(&held->view, 0, sizeof held->view);
    memset(&held->view2, 0, sizeof held->view2);
    if (a != NULL)
        held->view = *a;
    if (b != NULL)
        held->view2 = *b;
    return held;
}

/* MPI.Request's fields, slots of its instances (see bind_types): in a
 * request whose type is MPI.Request itself they are read and written in
 * place, where an attribute lookup took some 20 ns, and a request's start
 * and wait took eleven. off is 0 when the slot was not found; the lookups
 * then serve. */
enum { F_H, F_KIND, F_KEEP, F_DONE, F_STATUS, F_OBJ, N_FIELDS };
static struct {
    PyObject **name;
    Py_ssize_t off;
} fields[N_FIELDS] = {{&s_h}, {&s_kind}, {&s_keep}, {&s_done}, {&s_status}, {&s_obj}};
static int fields_known; /* every off found */

#define FIELD(o, f) (*(PyObject **)((char *)(o) + fields[f].off))

/* Whether r's fields can be reached in place. */
static int in_place_fields(PyObject *r)
{
    return fields_known && Py_TYPE(r) == request_type;
}

/* Request r's field f (a new reference), or NULL with an error. */
static PyObject *get_field(PyObject *r, int f)
{
    if (!in_place_fields(r))
        return PyObject_GetAttr(r, *fields[f].name);
    PyObject *v = FIELD(r, f);
    if (v == NULL) {
        PyErr_SetObject(PyExc_AttributeError, *fields[f].name);
        return NULL;
    }
    return Py_NewRef(v);
}

/* Sets request r's field f to v: 0, or -1 with an error. */
static int set_field(PyObject *r, int f, PyObject *v)
{
    if (!in_place_fields(r))
        return PyObject_SetAttr(r, *fields[f].name, v);
    Py_XSETREF(FIELD(r, f), Py_NewRef(v));
    return 0;
}

/* Finds the slots of MPI.Request's fields in type t. */
static void find_fields(PyTypeObject *t)
{
    fields_known = 1;
    for (int i = 0; i < N_FIELDS; i++) {
        PyObject *d = PyObject_GetAttr((PyObject *)t, *fields[i].name);
        fields[i].off = 0;
        if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) &&
            ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX)
            fields[i].off = ((PyMemberDescrObject *)d)->d_member->offset;
        else
            fields_known = 0;
        Py_XDECREF(d);
    }
    PyErr_Clear();
}

/* The handle of a nonblocking send whose message went out as it started
 * (pybridge's reqSent): its request completes here, as a request on
 * PROC_NULL does, with the status its _status holds (see request_of):
 * SENT_STATUS, the status Open MPI gives such a send. */
#define REQ_SENT (-1)
#define SENT_STATUS {proc_null, -1 /* ANY_TAG */, 0, 0}

/* A request made for handle req (see start), whose _keep is held: it takes
 * held's reference (held may be NULL for REQ_SENT). One done as it started
 * (REQ_SENT) keeps nothing, and
 * its _status is a new tuple (source, tag, count) of SENT_STATUS (a new one
 * each, so that a copy of the request, which shares it, is the request's
 * equal and no other's; Request._done_status reads it). */
static PyObject *request_of(Held *held, i64 req, PyObject *kind)
{
    if (held != NULL)
        held->h = req > 0 ? req : 0;
    PyObject *r = NULL, *h = PyLong_FromLongLong(req), *status = Py_NewRef(Py_None);
    if (req == REQ_SENT) {
        const i64 st[4] = SENT_STATUS;
        PyObject *f[3] = {PyLong_FromLongLong(st[0]), PyLong_FromLongLong(st[1]), PyLong_FromLongLong(st[2])};
        Py_SETREF(status, f[0] && f[1] && f[2] ? PyTuple_Pack(3, f[0], f[1], f[2]) : NULL);
        for (int i = 0; i < 3; i++)
            Py_XDECREF(f[i]);
        if (status == NULL)
            Py_CLEAR(h);
    }
    if (h != NULL)
        r = PyBaseObject_Type.tp_new(request_type, empty, NULL);
    if (r == NULL || set_field(r, F_H, h) < 0 || set_field(r, F_KIND, kind) < 0 ||
        set_field(r, F_KEEP, req > 0 ? (PyObject *)held : Py_None) < 0 ||
        set_field(r, F_DONE, Py_None) < 0 ||
        set_field(r, F_STATUS, status) < 0 || set_field(r, F_OBJ, Py_None) < 0)
        Py_CLEAR(r);
    Py_XDECREF(h);
    Py_XDECREF(status);
    Py_XDECREF(held); /* the request holds it, or, on an error, it frees the handle */
    return r;
}

/* The status of request r, done as it started (SENT_HERE): what its
 * _status holds (see request_of), else SENT_STATUS. */
static void done_status(PyObject *r, i64 st[4])
{
    const i64 sent[4] = SENT_STATUS;
    memcpy(st, sent, sizeof sent);
    PyObject *t = get_field(r, F_STATUS);
    if (t != NULL && PyTuple_Check(t) && PyTuple_GET_SIZE(t) == 3)
        for (int i = 0; i < 3; i++)
            st[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(t, i));
    Py_XDECREF(t);
    PyErr_Clear();
}

/* The nonblocking form of a collective started with result rc and handle
 * req: its request, holding the buffers a and b (either may be NULL: not
 * held; the views move into the request). */
static PyObject *started(i64 rc, i64 req, Py_buffer *a, Py_buffer *b)
{
    Held *held = held_new(a, b);
    if (held == NULL || rc < 0) {
        if (held == NULL) {
            if (a != NULL)
                PyBuffer_Release(a);
            if (b != NULL)
                PyBuffer_Release(b);
            if (rc >= 0)
                pm_req_free(req);
        } else
            Py_DECREF(held);
        if (rc < 0)
            fail(rc);
        return NULL;
    }
    return request_of(held, req, k_coll);
}

/* rc = call: with the GIL released for a blocking call, held for the start
 * of a nonblocking one (nb), which does not wait. */
#define CALLED(rc, nb, call)       \
    do {                           \
        if (nb) {                  \
            rc = (call);           \
        } else {                   \
            Py_BEGIN_ALLOW_THREADS \
            rc = (call);           \
            Py_END_ALLOW_THREADS   \
        }                          \
    } while (0)

/* The end of a collective that held the buffers a and b (either may be
 * NULL) and returned rc: for a nonblocking one (nb), its request req, which
 * holds them now (started); for a blocking one, released, and its result. */
static PyObject *ended(int nb, i64 rc, i64 req, Py_buffer *a, Py_buffer *b)
{
    if (nb)
        return started(rc, req, a, b);
    if (a != NULL)
        PyBuffer_Release(a);
    if (b != NULL)
        PyBuffer_Release(b);
    return done(rc);
}

/* f_NAME and f_iNAME: the blocking and nonblocking forms of NAME_impl. */
#define FORMS(name)                                                                 \
    static PyObject *f_##name(PyObject *self, PyObject *const *args, Py_ssize_t n)  \
    {                                                                               \
        return name##_impl(args, n, 0);                                             \
    }                                                                               \
    static PyObject *f_i##name(PyObject *self, PyObject *const *args, Py_ssize_t n) \
    {                                                                               \
        return name##_impl(args, n, 1);                                             \
    }

/* What start starts. */
enum { ISEND, IRECV, ISEND_OBJ, IRECV_OBJ };

/* Whether a receive from src with tag into a buffer of len bytes, on a
 * communicator of size ranks (a Python int), is posted lazily: a small
 * buffer, and arguments that the runtime takes (a rank of the communicator
 * or ANY_SOURCE, a tag or ANY_TAG: both -1), whose errors are then reported
 * as the receive starts, as ever. */
static int lazy_ok(i64 src, i64 tag, Py_ssize_t len, PyObject *size)
{
    if (posts == NULL || len > lazy_limit || !PyLong_CheckExact(size))
        return 0;
    long long np = PyLong_AsLongLong(size);
    if (np == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return (src == -1 || (src >= 0 && src < np)) && tag >= -1;
}

/* A nonblocking send (isend(h, dest, tag, sync, buf)), receive (irecv(h,
 * source, tag, buf, size), size the communicator's: see lazy_ok), object
 * send (isend_obj(h, dest, tag, sync, obj), the pickle sent as one message)
 * or object receive (irecv_obj(h, source, tag, size)) started: an
 * MPI.Request (made as Request._new makes one: its _h, _kind and _keep, a
 * Held that owns the handle and the buffer), or False for the general
 * path. */
static PyObject *start(PyObject *const *args, Py_ssize_t n, int mode)
{
    static const char *names[] = {"isend", "irecv", "isend_obj", "irecv_obj"};
    int send = mode == ISEND || mode == ISEND_OBJ;
    long long a[4];
    switch (leading(names[mode], args, n, mode == IRECV_OBJ ? 4 : 5, send ? 4 : 3, a)) {
    case -1:
        return NULL;
    case 0:
        Py_RETURN_FALSE;
    }
    if (a[0] == 0 || a[1] == proc_null || request_type == NULL)
        Py_RETURN_FALSE;
    /* v: the message's buffer (none for an object receive); for an object
     * send, a view of its pickle, which v holds. */
    Py_buffer v;
    memset(&v, 0, sizeof v);
    if (mode == ISEND || mode == IRECV) {
        if (!getmsg(args[send ? 4 : 3], &v, !send, 1, 1))
            Py_RETURN_FALSE;
    } else if (mode == ISEND_OBJ) {
        PyObject *data = pickled_joined(args[4], &v);
        if (data == NULL)
            return NULL;
        Py_DECREF(data);
    }
    void *buf = v.len ? v.buf : NULL;
    i64 rc, req = 0;
    if (mode == IRECV_OBJ && lazy_ok(a[1], a[2], 0, args[3]) &&
        post_lazily(a[0], a[1], a[2], NULL, ANY_SIZE, &req)) {
        Held *held = held_new(NULL, NULL);
        if (held == NULL)
            return NULL; /* the entry is posted as the handle's, waited for by no one */
        return request_of(held, req, k_obj);
    }
    /* Releasing the GIL and taking it back costs some 45 ns. A small send
     * goes first where it need not wait (pm_isend_now), with the GIL held:
     * one that went needs no Held to keep its buffer. */
    if (send && a[3] == 0) {
        i64 now = pm_isend_now(a[0], a[1], a[2], buf, v.len);
        if (now != 0) {
            PyBuffer_Release(&v);
            if (now < 0) {
                fail(now);
                return NULL;
            }
            return request_of(NULL, REQ_SENT, k_send);
        }
    }
    Held *held = held_new(&v, NULL);
    if (held == NULL) {
        PyBuffer_Release(&v);
        return NULL;
    }
    if (send) { /* it may wait for room in the link */
        Py_BEGIN_ALLOW_THREADS
        rc = pm_isend(a[0], a[1], a[2], buf, v.len, a[3], &req);
        Py_END_ALLOW_THREADS
    } else if (mode == IRECV && lazy_ok(a[1], a[2], v.len, args[4]) &&
               post_lazily(a[0], a[1], a[2], buf, v.len, &req))
        rc = 0;
    else /* posting never waits */
        rc = pm_irecv(a[0], a[1], a[2], buf, v.len, &req);
    if (rc < 0) {
        Py_DECREF(held);
        fail(rc);
        return NULL;
    }
    return request_of(held, req, mode == IRECV ? k_buf : mode == IRECV_OBJ ? k_obj : k_send);
}

static PyObject *f_isend(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    return start(args, n, ISEND);
}

static PyObject *f_irecv(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    return start(args, n, IRECV);
}

static PyObject *f_isend_obj(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    return start(args, n, ISEND_OBJ);
}

static PyObject *f_irecv_obj(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    return start(args, n, IRECV_OBJ);
}

/* wait(request, status) -> the runtime's result: waits for the request,
 * fills status and, once it succeeded, frees the request's handle. */
static PyObject *f_wait(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    long long a[1];
    if (strict("wait", args, n, 2, 1, a) < 0)
        return NULL;
    i64 st[4] = {0, 0, 0, 0}, rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pm_wait(a[0], st);
    Py_END_ALLOW_THREADS
    if (rc >= 0)
        pm_req_free(a[0]);
    if (set_status(args[1], st) < 0)
        return NULL;
    return PyLong_FromLongLong(rc);
}

/* The message parts of a list as addresses and lengths, each part's buffer
 * held in views[] (k of them). */
static int parts_of(PyObject *parts, Py_buffer *views, void **addrs, i64 *lens, Py_ssize_t k)
{
    for (Py_ssize_t i = 0; i < k; i++) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(parts, i), &views[i], PyBUF_ANY_CONTIGUOUS) != 0) {
            while (i-- > 0)
                PyBuffer_Release(&views[i]);
            return -1;
        }
        addrs[i] = views[i].len ? views[i].buf : NULL;
        lens[i] = views[i].len;
    }
    return 0;
}

/* send_obj(h, dest, tag, sync, obj): obj pickled by dumps, its parts sent as
 * one message. */
static PyObject *f_send_obj(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    ARGS("send_obj", 5, 4);
    long long h = a[0], dst = a[1], tag = a[2], sync = a[3];
    if (h == 0 || dst == proc_null)
        Py_RETURN_FALSE;
    PyObject *parts = pickled(args[4]);
    if (parts == NULL)
        return NULL;
    Py_ssize_t k = PyList_GET_SIZE(parts);
    i64 rc;
    if (k == 1) {
        Py_buffer v;
        if (PyObject_GetBuffer(PyList_GET_ITEM(parts, 0), &v, PyBUF_ANY_CONTIGUOUS) != 0) {
            Py_DECREF(parts);
            return NULL;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = pm_send(h, dst, tag, v.len ? v.buf : NULL, v.len, sync);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&v);
    } else {
        Py_buffer *views = PyMem_Malloc(k * (sizeof(Py_buffer) + sizeof(void *) + sizeof(i64)));
        if (views == NULL) {
            Py_DECREF(parts);
            return PyErr_NoMemory();
        }
        void **addrs = (void **)(views + k);
        i64 *lens = (i64 *)(addrs + k);
        if (parts_of(parts, views, addrs, lens, k) < 0) {
            PyMem_Free(views);
            Py_DECREF(parts);
            return NULL;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = pm_sendv(h, dst, tag, addrs, lens, k, sync);
        Py_END_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < k; i++)
            PyBuffer_Release(&views[i]);
        PyMem_Free(views);
    }
    Py_DECREF(parts);
    return done(rc);
}

static char *scratch(void)
{
    char *s = pthread_getspecific(scratch_key);
    if (s == NULL) {
        s = malloc(SCRATCH);
        if (s != NULL && pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            s = NULL;
        }
    }
    return s;
}

/* Unpickling runs code (reducers, __setstate__) that may receive objects on
 * this thread while the scratch's bytes are still being read: the scratch
 * is the reader's until return_scratch, and such a receive gets memory of
 * its own. lend_scratch(s) takes s from the thread when it is its scratch
 * (else NULL: nothing to return). */
static char *lend_scratch(const char *s)
{
    char *mine = pthread_getspecific(scratch_key);
    if (mine != s || pthread_setspecific(scratch_key, NULL) != 0)
        return NULL;
    return mine;
}

static void return_scratch(char *s)
{
    if (s != NULL && (pthread_getspecific(scratch_key) != NULL || pthread_setspecific(scratch_key, s) != 0))
        free(s); /* the thread has another now */
}

/* The object in n received bytes: those of data (a bytearray, stolen) or,
 * with data NULL, of memory s lent for this call only, the thread's scratch
 * say (copied first if they carry out-of-band buffers, which become the
 * object's: they must not alias memory that is used again). */
/* Pickles up to this size in memory lent for the call are copied into a
 * bytes object and loaded from it: cheaper than a view of the memory,
 * which must be released after (and the memory kept from reentrant
 * receives meanwhile). */
#define LOAD_COPY (8 * 1024)

static PyObject *load(PyObject *data, const char *s, i64 n)
{
    int in_scratch = 0;
    char *lent = NULL;
    if (data == NULL && std_pickle && n > 0 && n <= LOAD_COPY && s[0] != 1) {
        PyObject *b = PyBytes_FromStringAndSize(s, n);
        if (b == NULL)
            return NULL;
        PyObject *obj = PyObject_CallOneArg(pk_loads, b);
        Py_DECREF(b);
        return obj;
    }
    if (data == NULL && n > 0 && s[0] == 1) {
        data = PyByteArray_FromStringAndSize(s, n);
        if (data == NULL)
            return NULL;
    }
    PyObject *mv;
    if (data != NULL) {
        mv = PyMemoryView_FromObject(data);
        Py_DECREF(data);
    } else {
        mv = PyMemoryView_FromMemory((char *)s, n, PyBUF_READ);
        in_scratch = 1;
        lent = lend_scratch(s);
    }
    if (mv == NULL) {
        return_scratch(lent);
        return NULL;
    }
    /* In band (no header of out-of-band buffers): the standard pickle's
     * loads directly, as loads would call it. */
    const char *p = PyMemoryView_GET_BUFFER(mv)->buf;
    int plain = std_pickle && n > 0 && p[0] != 1;
    PyObject *obj = PyObject_CallOneArg(plain ? pk_loads : loads, mv);
    if (in_scratch) {
        /* The scratch is used again by the next call: no view of it may
         * outlive this one (pickle's loads copies what it reads; a view
         * still exported, by a traceback's frame say, stays as it is). */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *r = PyObject_CallMethodObjArgs(mv, release_name, NULL);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
        PyErr_Restore(et, ev, tb);
    }
    Py_DECREF(mv);
    return_scratch(lent);
    return obj;
}

/* Whether this thread's last object message was larger than PROBE_ABOVE:
 * the next one is then probed first, to be received straight into the
 * scratch, or into memory of its size when larger, where a small one is
 * received in one match (a probe and a receive cost a microsecond more).
 * Above PROBE_ABOVE a message comes by rendezvous, which the one-match
 * receive took into memory the runtime allocated (and zeroed) for it, to
 * copy it again into the scratch: a ping-pong of 64 KiB objects took 32 us
 * one way, mpi4py's 18. */
static __thread int last_large;
#define PROBE_ABOVE (8 * 1024) /* comm's ShmEagerDirect */

/* A blob of the runtime's (size bytes) as a bytearray. */
static PyObject *take_blob(i64 blob, i64 size)
{
    PyObject *data = PyByteArray_FromStringAndSize(NULL, size);
    if (data == NULL) {
        pm_blob_take(blob, NULL, 0);
        return NULL;
    }
    i64 rc = pm_blob_take(blob, PyByteArray_AS_STRING(data), size);
    if (rc < 0) {
        Py_DECREF(data);
        fail(rc);
        return NULL;
    }
    return data;
}

/* loaded returns the object in the size bytes an object collective
 * received as its rc says (pm_bcast_obj): in the scratch s (1), in memory
 * of malloc's at address blob (2, freed here), or in the runtime's blob. */
static PyObject *loaded(i64 rc, const char *s, i64 blob, i64 size)
{
    if (rc == 1)
        return load(NULL, s, size);
    if (rc == 2) {
        PyObject *out = load(NULL, (char *)(intptr_t)blob, size);
        free((char *)(intptr_t)blob);
        return out;
    }
    PyObject *data = take_blob(blob, size);
    return data == NULL ? NULL : load(data, NULL, size);
}

/* recv_obj(h, source, tag, status): the next object. A message that fits the
 * thread's scratch memory is unpickled from there; a larger one from a
 * bytearray of its size. */
static PyObject *f_recv_obj(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    long long a[3];
    if (strict("recv_obj", args, n, 4, 3, a) < 0)
        return NULL;
    long long h = a[0], src = a[1], tag = a[2];
    char *s = scratch();
    if (s == NULL)
        return PyErr_NoMemory();
    i64 st[4] = {0, 0, 0, 0}, rc, blob = 0;
    int probe = last_large;
    Py_BEGIN_ALLOW_THREADS
    if (probe)
        rc = pm_recv_obj(h, src, tag, s, SCRATCH, st);
    else
        rc = pm_recv_any(h, src, tag, s, SCRATCH, st, &blob);
    Py_END_ALLOW_THREADS
    PyObject *data = NULL;
    if (rc == 1 && !probe) {
        if ((data = take_blob(blob, st[2])) == NULL)
            return NULL;
    } else if (rc == 1) {
        data = PyByteArray_FromStringAndSize(NULL, st[2]);
        if (data == NULL)
            return NULL;
        char *p = PyByteArray_AS_STRING(data);
        i64 size = st[2];
        Py_BEGIN_ALLOW_THREADS
        rc = pm_recv(h, st[0], st[1], p, size, st);
        Py_END_ALLOW_THREADS
    }
    if (rc < 0) {
        Py_XDECREF(data);
        set_status(args[3], st);
        fail(rc);
        return NULL;
    }
    last_large = data != NULL || st[2] > PROBE_ABOVE;
    if (set_status(args[3], st) < 0) {
        Py_XDECREF(data);
        return NULL;
    }
    return load(data, s, st[2]);
}

/* Whether the standard pickle found a buffer (PickleBuffer: a numpy array,
 * a bytearray) in the object it pickles; found_buffer is its callback. */
static __thread int buffer_found;

static PyObject *found_buffer(PyObject *self, PyObject *pb)
{
    buffer_found = 1;
    Py_RETURN_FALSE; /* out of band: not copied, and the pickle is dropped */
}

static PyMethodDef found_buffer_def = {"found_buffer", found_buffer, METH_O, NULL};

/* The message parts of obj: the standard pickle's one part for an object
 * without buffers, else dumps(obj). */
static PyObject *pickled(PyObject *obj)
{
    if (std_pickle && oob_cb != NULL) {
        /* The standard pickle, in band, unless the object holds a buffer:
         * then dumps (Python) decides which buffers travel out of band. A
         * call of dumps cost a tuple or dict 0.3 us more. */
        int outer = buffer_found;
        buffer_found = 0;
        PyObject *pa[3] = {obj, five, oob_cb};
        PyObject *data = PyObject_Vectorcall(pk_dumps, pa, 2, buffer_callback_kw);
        int found = buffer_found;
        buffer_found = outer;
        if (data == NULL)
            return NULL;
        if (!found) {
            PyObject *parts = PyList_New(1);
            if (parts == NULL) {
                Py_DECREF(data);
                return NULL;
            }
            PyList_SET_ITEM(parts, 0, data);
            return parts;
        }
        Py_DECREF(data);
    }
    PyObject *parts = PyObject_CallOneArg(dumps, obj);
    if (parts != NULL && (!PyList_Check(parts) || PyList_GET_SIZE(parts) < 1)) {
        Py_DECREF(parts);
        PyErr_SetString(PyExc_TypeError, "pmrun._fast: dumps must return a list of parts");
        return NULL;
    }
    return parts;
}

/* bcast_obj(h, root, isroot, obj): root's obj, unpickled on every rank (the
 * root gets a copy too, as with mpi4py). */
static PyObject *f_bcast_obj(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    long long a[3];
    if (strict("bcast_obj", args, n, 4, 3, a) < 0)
        return NULL;
    long long h = a[0], root = a[1];
    i64 blob = 0, size = 0, rc;
    if (a[2]) {
        Py_buffer v;
        PyObject *data = pickled_joined(args[3], &v);
        if (data == NULL)
            return NULL;
        Py_BEGIN_ALLOW_THREADS
        rc = pm_bcast_obj(h, root, v.len ? v.buf : NULL, v.len, &blob, &size);
        Py_END_ALLOW_THREADS
        if (rc < 0) {
            PyBuffer_Release(&v);
            Py_DECREF(data);
            fail(rc);
            return NULL;
        }
        PyObject *obj = load(NULL, v.buf, v.len);
        PyBuffer_Release(&v);
        Py_DECREF(data);
        return obj;
    }
    char *s = scratch();
    if (s == NULL)
        return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
    rc = pm_bcast_obj(h, root, s, SCRATCH, &blob, &size);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        fail(rc);
        return NULL;
    }
    return loaded(rc, s, blob, size);
}

/* One part holding all the parts of obj's message (a new reference), its
 * buffer held in v. */
static PyObject *pickled_joined(PyObject *obj, Py_buffer *v)
{
    PyObject *parts = pickled(obj);
    if (parts == NULL)
        return NULL;
    PyObject *data = PyList_GET_SIZE(parts) == 1 ? Py_NewRef(PyList_GET_ITEM(parts, 0))
                                                 : PyObject_CallOneArg(joined, parts);
    Py_DECREF(parts);
    if (data != NULL && PyObject_GetBuffer(data, v, PyBUF_ANY_CONTIGUOUS) != 0)
        Py_CLEAR(data);
    return data;
}

/* The pickles of a list's items, held (with the buffers they expose) until
 * release_items. */
struct items {
    Py_ssize_t k, held;
    Py_buffer *views;
    PyObject **datas;
    void **addrs;
    i64 *lens;
};

/* pickle_items pickles the k items of list items into it; -1 with an
 * exception set on failure (release_items still frees what was made). */
static int pickle_items(PyObject *items, Py_ssize_t k, struct items *it)
{
    memset(it, 0, sizeof(*it));
    it->k = k;
    if (k == 0)
        return 0;
    it->views = PyMem_Calloc(k, sizeof(Py_buffer));
    it->datas = PyMem_Calloc(k, sizeof(PyObject *));
    it->addrs = PyMem_Calloc(k, sizeof(void *));
    it->lens = PyMem_Calloc(k, sizeof(i64));
    if (!it->views || !it->datas || !it->addrs || !it->lens) {
        PyErr_NoMemory();
        return -1;
    }
    for (; it->held < k; it->held++) {
        Py_ssize_t i = it->held;
        it->datas[i] = pickled_joined(PyList_GET_ITEM(items, i), &it->views[i]);
        if (it->datas[i] == NULL)
            return -1;
        it->addrs[i] = it->views[i].len ? it->views[i].buf : NULL;
        it->lens[i] = it->views[i].len;
    }
    return 0;
}

static void release_items(struct items *it)
{
    for (Py_ssize_t i = 0; i < it->held; i++) {
        PyBuffer_Release(&it->views[i]);
        Py_DECREF(it->datas[i]);
    }
    PyMem_Free(it->views);
    PyMem_Free(it->datas);
    PyMem_Free(it->addrs);
    PyMem_Free(it->lens);
}

/* loads_pieces returns the list of the size objects whose pickles, of lens
 * bytes each, lie one after another in the received bytes: the thread's
 * scratch s (rc 1, small results), memory of malloc's at address blob
 * (rc 2, freed here) or the runtime's blob (rc 0). */
static PyObject *loads_pieces(i64 rc, const char *s, i64 blob, const i64 *lens, long long size)
{
    i64 total = 0;
    for (long long r = 0; r < size; r++)
        total += lens[r];
    PyObject *got = NULL, *out = NULL, *mv = NULL;
    char *own = NULL, *lent = NULL;
    if (rc == 2) {
        own = (char *)(intptr_t)blob;
    } else if (rc == 1) {
        /* The scratch is this call's until every piece is read (unpickling
         * one may receive objects on this thread). */
        own = (char *)s;
        lent = lend_scratch(s);
    } else if ((got = take_blob(blob, total)) == NULL || (mv = PyMemoryView_FromObject(got)) == NULL) {
        Py_XDECREF(got);
        return NULL;
    }
    if ((out = PyList_New(size)) == NULL)
        goto done;
    i64 off = 0;
    for (long long r = 0; r < size; r++) {
        PyObject *o;
        if (own != NULL) {
            /* Copied by load when it carries out-of-band buffers. */
            o = load(NULL, own + off, lens[r]);
        } else {
            /* Each piece a view of the received bytes, which its
             * out-of-band buffers may keep. */
            PyObject *piece = PySequence_GetSlice(mv, off, off + lens[r]);
            o = piece == NULL ? NULL : PyObject_CallOneArg(loads, piece);
            Py_XDECREF(piece);
        }
        if (o == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, r, o);
        off += lens[r];
    }
done:
    if (rc == 2)
        free(own);
    return_scratch(lent);
    Py_XDECREF(mv);
    Py_XDECREF(got);
    return out;
}

/* gather_obj(h, root, all, size, obj): the list of every rank's obj at root
 * (everywhere with all), None elsewhere. */
static PyObject *f_gather_obj(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    long long a[4];
    if (strict("gather_obj", args, n, 5, 4, a) < 0)
        return NULL;
    long long h = a[0], root = a[1], all = a[2], size = a[3];
    if (size <= 0 || size > (1 << 24)) {
        PyErr_Format(PyExc_ValueError, "gather_obj: bad size %lld", size);
        return NULL;
    }
    Py_buffer v;
    PyObject *data = pickled_joined(args[4], &v);
    if (data == NULL)
        return NULL;
    i64 *lens = PyMem_Calloc(size, sizeof(i64)), blob = 0, rc;
    char *s = scratch();
    if (lens == NULL || s == NULL) {
        PyMem_Free(lens);
        PyBuffer_Release(&v);
        Py_DECREF(data);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    rc = pm_gather_obj(h, root, all, v.len ? v.buf : NULL, v.len, lens, size, s, SCRATCH, &blob);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&v);
    Py_DECREF(data);
    PyObject *out = NULL;
    if (rc < 0)
        fail(rc);
    else if (rc == 0 && blob == 0)
        out = Py_NewRef(Py_None);
    else
        out = loads_pieces(rc, s, blob, lens, size);
    PyMem_Free(lens);
    return out;
}

/* scatter_obj(h, root, items): item r of the root's list (None elsewhere)
 * on rank r; the root checked that there is one per rank. */
static PyObject *f_scatter_obj(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    long long a[2];
    if (strict("scatter_obj", args, n, 3, 2, a) < 0)
        return NULL;
    PyObject *items = args[2];
    Py_ssize_t k = 0;
    if (items != Py_None) {
        if (!PyList_Check(items)) {
            PyErr_SetString(PyExc_TypeError, "scatter_obj: the root's items are a list");
            return NULL;
        }
        k = PyList_GET_SIZE(items);
    }
    struct items it;
    i64 blob = 0, size = 0, rc;
    PyObject *out = NULL;
    char *s = scratch();
    if (pickle_items(items, k, &it) < 0)
        goto done;
    if (s == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = pm_scatter_obj(a[0], a[1], it.addrs, it.lens, k, s, SCRATCH, &blob, &size);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        fail(rc);
        goto done;
    }
    out = loaded(rc, s, blob, size);
done:
    release_items(&it);
    return out;
}

/* alltoall_obj(h, items): a list of one item per rank (the caller checked
 * its length), item r going to rank r; returns the list of what each rank
 * sent this one. */
static PyObject *f_alltoall_obj(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    long long a[1];
    if (strict("alltoall_obj", args, n, 2, 1, a) < 0)
        return NULL;
    PyObject *items = args[1];
    if (!PyList_Check(items) || PyList_GET_SIZE(items) == 0) {
        PyErr_SetString(PyExc_TypeError, "alltoall_obj: the items are a list, one per rank");
        return NULL;
    }
    Py_ssize_t k = PyList_GET_SIZE(items);
    struct items it;
    i64 *rlens = NULL, blob = 0, rc;
    PyObject *out = NULL;
    char *s = scratch();
    if (pickle_items(items, k, &it) < 0)
        goto done;
    if ((rlens = PyMem_Calloc(k, sizeof(i64))) == NULL || s == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = pm_alltoall_obj(a[0], it.addrs, it.lens, rlens, k, s, SCRATCH, &blob);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        fail(rc);
    else
        out = loads_pieces(rc, s, blob, rlens, k);
done:
    release_items(&it);
    PyMem_Free(rlens);
    return out;
}

/* bcast(h, root, isroot, buf), and ibcast (the same arguments): its
 * request, or False for the general path. */
static PyObject *bcast_impl(PyObject *const *args, Py_ssize_t n, int nb)
{
    ARGS("bcast", 4, 3);
    Py_buffer v;
    if (a[0] == 0 || (nb && request_type == NULL) || !getmsg(args[3], &v, !a[2], 1, 2))
        Py_RETURN_FALSE;
    i64 rc, req = 0;
    CALLED(rc, nb, pm_bcast(a[0], a[1], v.buf, v.len, v.len, nb ? &req : NULL));
    return ended(nb, rc, req, &v, NULL);
}

FORMS(bcast)

/* The buffers of a gather or scatter: one rank's block (one, always) and,
 * where has_all, the buffer of all the blocks (all), size times as large.
 * Where has_all, one may be MPI.IN_PLACE: o is then an empty view (no
 * address, nothing held) of a block's length, which pm_gather and
 * pm_scatter read as in place. 1 with both held, 0 (nothing held) when the
 * general path must do it. Empty messages take it too (nothing moves), but
 * not empty buffers without an address (see bufview). */
static int blocks(PyObject *one, int one_w, PyObject *all, int all_w, int has_all, long long size,
                  Py_buffer *o, Py_buffer *a)
{
    int inplace = has_all && in_place != NULL && one == in_place;
    if (!inplace && !getmsg(one, o, one_w, 1, 2))
        return 0;
    if (!has_all)
        return 1;
    if (!getmsg(all, a, all_w, size, 2)) {
        if (!inplace)
            PyBuffer_Release(o);
        return 0;
    }
    if (inplace) {
        if (size <= 0 || a->len % size != 0) {
            PyBuffer_Release(a);
            return 0;
        }
        memset(o, 0, sizeof *o);
        o->len = a->len / size;
        return 1;
    }
    if (a->len != o->len * size) {
        PyBuffer_Release(o);
        PyBuffer_Release(a);
        return 0;
    }
    return 1;
}

/* gather(h, root, me, all, size, sendbuf, recvbuf): me is whether this rank
 * receives (the root, or every rank for allgather). igather (the same
 * arguments): its request, or False for the general path. */
static PyObject *gather_impl(PyObject *const *args, Py_ssize_t n, int nb)
{
    ARGS("gather", 7, 5);
    long long h = a[0], root = a[1], me = a[2], all = a[3], size = a[4];
    Py_buffer s, r = {0};
    if (h == 0 || (nb && request_type == NULL) || !blocks(args[5], 0, args[6], 1, me, size, &s, &r))
        Py_RETURN_FALSE;
    i64 rc, req = 0;
    CALLED(rc, nb, pm_gather(h, root, s.buf, s.len, s.len, r.buf, r.len, all, nb ? &req : NULL));
    return ended(nb, rc, req, &s, me ? &r : NULL);
}

FORMS(gather)

/* alltoall(h, size, sendbuf, recvbuf): buffers of size blocks each, of
 * the same element type. ialltoall (the same arguments): its request, or
 * False for the general path. */
static PyObject *alltoall_impl(PyObject *const *args, Py_ssize_t n, int nb)
{
    ARGS("alltoall", 4, 2);
    long long h = a[0], size = a[1];
    Py_buffer s, r;
    if (h == 0 || size <= 0 || (nb && request_type == NULL) || !getmsg(args[2], &s, 0, size, 2))
        Py_RETURN_FALSE;
    if (!getmsg(args[3], &r, 1, size, 2)) {
        PyBuffer_Release(&s);
        Py_RETURN_FALSE;
    }
    /* blocks of whole elements of one type, or the general path (and its
     * errors) */
    if (s.len != r.len || s.itemsize != r.itemsize || s.itemsize <= 0 ||
        (r.len / r.itemsize) % size != 0 ||
        strcmp(s.format ? s.format : "B", r.format ? r.format : "B") != 0) {
        PyBuffer_Release(&s);
        PyBuffer_Release(&r);
        Py_RETURN_FALSE;
    }
    i64 rc, req = 0;
    CALLED(rc, nb, pm_alltoall(h, s.buf, s.len, r.buf, r.len, r.len / size, nb ? &req : NULL));
    return ended(nb, rc, req, &s, &r);
}

FORMS(alltoall)

/* ints_of for an array of k native integers (array.array('i', ...), a
 * numpy array of ints: what mpi4py's own benchmarks pass as counts and
 * displacements); 0 for anything else. */
static int ints_of_buffer(PyObject *obj, Py_ssize_t k, i64 es, i64 *v)
{
    Py_buffer b;
    if (obj == Py_None || PyObject_GetBuffer(obj, &b, PyBUF_ND | PyBUF_FORMAT) != 0) {
        PyErr_Clear();
        return 0;
    }
    const char *f = b.format ? b.format : "B";
    if (*f == '@' || *f == '=')
        f++;
    int ok = b.ndim == 1 && b.shape[0] == k && f[0] != 0 && f[1] == 0 && strchr("bBhHiIlLqQ", f[0]) != NULL &&
             b.itemsize * k == b.len;
    for (Py_ssize_t i = 0; ok && i < k; i++) {
        const char *p = (const char *)b.buf + i * b.itemsize;
        long long x;
        switch (f[0]) {
        case 'b': x = *(const signed char *)p; break;
        case 'B': x = *(const unsigned char *)p; break;
        case 'h': x = *(const short *)p; break;
        case 'H': x = *(const unsigned short *)p; break;
        case 'i': x = *(const int *)p; break;
        case 'I': x = *(const unsigned int *)p; break;
        case 'l': x = *(const long *)p; break;
        case 'L': x = (long long)*(const unsigned long *)p; break;
        case 'q': x = *(const long long *)p; break;
        default: x = (long long)*(const unsigned long long *)p; break;
        }
        if (x < 0 || x > (1LL << 40))
            ok = 0;
        else
            v[i] = x * es;
    }
    PyBuffer_Release(&b);
    return ok;
}

/* k non-negative ints of a list or tuple into v (times es): 1, or 0 (no
 * error set) when seq is not one. */
static int ints_of(PyObject *seq, Py_ssize_t k, i64 es, i64 *v)
{
    if (!(PyList_Check(seq) || PyTuple_Check(seq)))
        return ints_of_buffer(seq, k, es, v);
    if (PySequence_Fast_GET_SIZE(seq) != k)
        return 0;
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < k; i++) {
        if (!PyLong_CheckExact(items[i]))
            return 0;
        long long x = PyLong_AsLongLong(items[i]);
        if (x < 0 || x > (1LL << 40)) {
            PyErr_Clear();
            return 0;
        }
        v[i] = x * es;
    }
    return 1;
}

/* A v-variant buffer in the forms [buf, counts], [buf, (counts, displs)],
 * [buf, counts, TYPE], [buf, (counts, displs), TYPE] and [buf, counts,
 * displs, TYPE] (as the general path reads them), with counts
 * and displs lists or tuples of size ints (displs None: packed in rank
 * order) and TYPE a predefined type of the buffer's element size: the
 * buffer held in r (writable for a receive), counts and displs in bytes.
 * 1, or 0 (nothing held, no error set) for the general path, which also
 * reports what is wrong. */
static int vspec(PyObject *spec, long long size, Py_buffer *r, i64 *counts, i64 *displs, int writable)
{
    if (!(PyList_Check(spec) || PyTuple_Check(spec)))
        return 0;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(spec);
    if (k < 2 || k > 4)
        return 0;
    PyObject **it = PySequence_Fast_ITEMS(spec);
    PyObject *cs = it[1], *ds = k == 4 ? it[2] : Py_None, *type = k >= 3 ? it[k - 1] : NULL;
    if (k <= 3 && PyTuple_Check(cs) && PyTuple_GET_SIZE(cs) == 2) {
        /* (counts, displs), as mpi4py reads any pair in that place, even of
         * two ints (a count and a stride, which ints_of leaves to the
         * general path) */
        ds = PyTuple_GET_ITEM(cs, 1);
        cs = PyTuple_GET_ITEM(cs, 0);
    }
    if (!rawbuf(it[0], r, writable))
        return 0;
    i64 es = r->itemsize, end = 0;
    int ok = es > 0 && ints_of(cs, size, es, counts);
    if (ok && type != NULL) { /* a predefined type of the element's size */
        PyObject *ts = PyObject_GetAttr(type, s_size), *tb = PyObject_GetAttr(type, s_blocks);
        ok = ts != NULL && tb == Py_None && PyLong_Check(ts) && PyLong_AsLongLong(ts) == es;
        Py_XDECREF(ts);
        Py_XDECREF(tb);
        PyErr_Clear();
    }
    if (ok && ds == Py_None)
        for (long long i = 0, off = 0; i < size; off += counts[i], i++)
            displs[i] = off;
    else if (ok)
        ok = ints_of(ds, size, es, displs);
    for (long long i = 0; ok && i < size; i++)
        end = counts[i] + displs[i] > end ? counts[i] + displs[i] : end;
    if (!ok || end > r->len) {
        PyBuffer_Release(r);
        return 0;
    }
    return 1;
}

/* gatherv(h, root, rank, all, size, sendbuf, recvspec): Gatherv (all 0) or
 * Allgatherv (all 1) of a contiguous send buffer into a v-variant receive
 * buffer (see vspec; ignored off the root of a Gatherv). igatherv (the same
 * arguments): its request, or False for the general path. */
static PyObject *gatherv_impl(PyObject *const *args, Py_ssize_t n, int nb)
{
    ARGS("gatherv", 7, 5);
    long long h = a[0], root = a[1], rank = a[2], all = a[3], size = a[4];
    int me = all || rank == root;
    if (h == 0 || size <= 0 || size > 256 || rank < 0 || rank >= size || (nb && request_type == NULL))
        Py_RETURN_FALSE;
    i64 counts[256], displs[256];
    Py_buffer s, r = {0};
    if (!getmsg(args[5], &s, 0, 1, 0))
        Py_RETURN_FALSE;
    if (me && !vspec(args[6], size, &r, counts, displs, 1)) {
        PyBuffer_Release(&s);
        Py_RETURN_FALSE;
    }
    if (me && counts[rank] != s.len) { /* the general path's error */
        PyBuffer_Release(&s);
        PyBuffer_Release(&r);
        Py_RETURN_FALSE;
    }
    i64 rc, req = 0;
    CALLED(rc, nb, pm_gatherv(h, root, s.buf, s.len, s.len, me ? r.buf : NULL, me ? r.len : 0, me ? counts : NULL,
                              me ? displs : NULL, me ? size : 0, all, nb ? &req : NULL));
    return ended(nb, rc, req, &s, me ? &r : NULL);
}

FORMS(gatherv)

/* Whether two buffers hold elements of one type. */
static int same_type(const Py_buffer *a, const Py_buffer *b)
{
    return a->itemsize == b->itemsize && strcmp(a->format ? a->format : "B", b->format ? b->format : "B") == 0;
}

/* scatterv(h, root, rank, size, sendspec, recvbuf): Scatterv of a v-variant
 * send buffer (see vspec; read at the root only) into a contiguous receive
 * buffer; iscatterv (the same arguments): its request, or False. */
static PyObject *scatterv_impl(PyObject *const *args, Py_ssize_t n, int nb)
{
    ARGS("scatterv", 6, 4);
    long long h = a[0], root = a[1], rank = a[2], size = a[3];
    int me = rank == root;
    if (h == 0 || size <= 0 || size > 256 || rank < 0 || rank >= size || (nb && request_type == NULL))
        Py_RETURN_FALSE;
    i64 counts[256], displs[256];
    Py_buffer s = {0}, r;
    if (!getmsg(args[5], &r, 1, 1, 0))
        Py_RETURN_FALSE;
    if (me && !vspec(args[4], size, &s, counts, displs, 0)) {
        PyBuffer_Release(&r);
        Py_RETURN_FALSE;
    }
    if (me && (counts[rank] != r.len || !same_type(&s, &r))) { /* the general path's error */
        PyBuffer_Release(&s);
        PyBuffer_Release(&r);
        Py_RETURN_FALSE;
    }
    i64 rc, req = 0;
    CALLED(rc, nb, pm_scatterv(h, root, me ? s.buf : NULL, me ? s.len : 0, me ? counts : NULL, me ? displs : NULL,
                               me ? size : 0, r.buf, r.len, r.len, nb ? &req : NULL));
    return ended(nb, rc, req, &r, me ? &s : NULL);
}

FORMS(scatterv)

/* alltoallv(h, size, sendspec, recvspec): Alltoallv of v-variant buffers
 * (see vspec) of one element type; ialltoallv (the same arguments): its
 * request, or False. */
static PyObject *alltoallv_impl(PyObject *const *args, Py_ssize_t n, int nb)
{
    ARGS("alltoallv", 4, 2);
    long long h = a[0], size = a[1];
    if (h == 0 || size <= 0 || size > 256 || (nb && request_type == NULL))
        Py_RETURN_FALSE;
    i64 sc[256], sd[256], rc_[256], rd[256];
    Py_buffer s, r;
    if (!vspec(args[2], size, &s, sc, sd, 0))
        Py_RETURN_FALSE;
    if (!vspec(args[3], size, &r, rc_, rd, 1)) {
        PyBuffer_Release(&s);
        Py_RETURN_FALSE;
    }
    if (!same_type(&s, &r)) {
        PyBuffer_Release(&s);
        PyBuffer_Release(&r);
        Py_RETURN_FALSE;
    }
    i64 rc, req = 0;
    CALLED(rc, nb, pm_alltoallv(h, s.buf, s.len, sc, sd, r.buf, r.len, rc_, rd, size, nb ? &req : NULL));
    return ended(nb, rc, req, &s, &r);
}

FORMS(alltoallv)

/* scatter(h, root, isroot, size, sendbuf, recvbuf), and iscatter (the same
 * arguments): its request, or False for the general path. */
static PyObject *scatter_impl(PyObject *const *args, Py_ssize_t n, int nb)
{
    ARGS("scatter", 6, 4);
    long long h = a[0], root = a[1], isroot = a[2], size = a[3];
    Py_buffer r, s = {0};
    if (h == 0 || (nb && request_type == NULL) || !blocks(args[5], 1, args[4], 0, isroot, size, &r, &s))
        Py_RETURN_FALSE;
    i64 rc, req = 0;
    CALLED(rc, nb, pm_scatter(h, root, s.buf, s.len, r.buf, r.len, r.len, nb ? &req : NULL));
    return ended(nb, rc, req, &r, isroot ? &s : NULL);
}

FORMS(scatter)

/* The Go type codes of (format, itemsize, op), or of (predefined datatype,
 * op), already asked of typecode(); the datatypes are the module's
 * constants, held for good, and told apart by identity. */
#define NCODES 32
static struct {
    char fmt[16];
    Py_ssize_t itemsize;
    PyObject *type;
    i64 op, code;
} codes[NCODES];
static int ncodes;

/* code_of is the Go type code of elements of format fmt and itemsize, or of
 * type (a predefined datatype, when not NULL: then fmt is ignored), that the
 * runtime reduces with op; 0 when it does not, -1 with an error set. */
static i64 code_of(const char *fmt, Py_ssize_t itemsize, PyObject *type, i64 op)
{
    for (int i = 0; i < ncodes; i++)
        if (codes[i].op == op && codes[i].type == type &&
            (type != NULL || (codes[i].itemsize == itemsize && strcmp(codes[i].fmt, fmt) == 0)))
            return codes[i].code;
    PyObject *r = type != NULL ? PyObject_CallFunction(typecode, "OnL", type, (Py_ssize_t)0, (long long)op)
                               : PyObject_CallFunction(typecode, "snL", fmt, itemsize, (long long)op);
    if (r == NULL)
        return -1;
    i64 code = PyLong_AsLongLong(r);
    Py_DECREF(r);
    if (PyErr_Occurred())
        return -1;
    if (ncodes < NCODES && (type != NULL || strlen(fmt) < sizeof(codes[0].fmt))) {
        codes[ncodes].fmt[0] = 0;
        if (type == NULL)
            strcpy(codes[ncodes].fmt, fmt);
        codes[ncodes].itemsize = itemsize;
        codes[ncodes].type = type;
        codes[ncodes].op = op;
        codes[ncodes].code = code;
        ncodes++;
    }
    return code;
}

/* A reduction's buffer, as getmsg takes it (a contiguous buffer, *type
 * NULL, or mpi4py's [buf, count, TYPE] or [buf, TYPE] of a predefined TYPE:
 * then *type is TYPE, borrowed (a module constant), and the view's itemsize
 * its size). 0 (no error set) leaves the call to the general path. */
static int redbuf(PyObject *obj, Py_buffer *v, int writable, PyObject **type)
{
    *type = NULL;
    if (!getmsg(obj, v, writable, 1, 0))
        return 0;
    if (PyList_Check(obj) || PyTuple_Check(obj)) { /* getmsg took it: TYPE is predefined */
        *type = PySequence_Fast_ITEMS(obj)[PySequence_Fast_GET_SIZE(obj) - 1];
        v->itemsize = predef_of(*type);
    }
    return 1;
}

/* reduce(h, kind, root, isroot, op, sendbuf, recvbuf or None): a reduction
 * of kind (RED_ALLREDUCE, RED_REDUCE, RED_SCAN, RED_EXSCAN, or
 * RED_SCATTER_BLOCK with root the communicator's size) of buffers of one
 * element type that the runtime reduces with op, a predefined Op (not a
 * user's); sendbuf may be MPI.IN_PLACE (not for RED_SCATTER_BLOCK). isroot
 * says whether this rank gets a result (for all but RED_REDUCE, every rank
 * does); one that does not (Reduce off the root) passes no receive buffer,
 * as mpi4py ignores it there. False, with nothing done, sends the call down
 * the general path. */
static PyObject *reduce_impl(PyObject *const *args, Py_ssize_t n, int nb)
{
    /* reduce_scatter's recvcounts come last, an eighth argument */
    long long a[4];
    switch (leading("reduce", args, n, n == 8 ? 8 : 7, 4, a)) {
    case -1:
        return NULL;
    case 0:
        Py_RETURN_FALSE;
    }
    if (nb && request_type == NULL)
        Py_RETURN_FALSE;
    long long h = a[0], kind = a[1], root = a[2], parts = 1;
    i64 counts[256], k = 0, mine = 0;
    if (kind == red_scatter_block) { /* root is the communicator's size */
        parts = root;
        root = 0;
        if (parts <= 0 || args[5] == in_place)
            Py_RETURN_FALSE;
    } else if (kind == red_scatter) { /* root is this rank; parts: the counts' sum */
        k = n == 8 && (PyList_Check(args[7]) || PyTuple_Check(args[7])) ? PySequence_Fast_GET_SIZE(args[7]) : 0;
        if (k <= 0 || k > 256 || root < 0 || root >= k || args[5] == in_place || !ints_of(args[7], k, 1, counts))
            Py_RETURN_FALSE;
        mine = counts[root];
        parts = 0;
        for (i64 i = 0; i < k; i++)
            parts += counts[i];
        root = 0;
    } else if (n != 7) {
        PyErr_Format(PyExc_TypeError, "reduce takes 7 arguments (%zd given)", n);
        return NULL;
    }
    PyObject *opo = args[4];
    if (h == 0 || op_type == NULL || Py_TYPE(opo) != (PyTypeObject *)op_type || args[5] == Py_None)
        Py_RETURN_FALSE;
    PyObject *user = PyObject_GetAttr(opo, s_user);
    if (user == NULL) {
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    int predefined = user == Py_None;
    Py_DECREF(user);
    PyObject *codeo = predefined ? PyObject_GetAttr(opo, s_code) : NULL;
    long long op = codeo == NULL ? -1 : PyLong_AsLongLong(codeo);
    Py_XDECREF(codeo);
    if (op <= 0) {
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    int inplace = args[5] == in_place;
    int result = kind == red_allreduce || a[3] != 0; /* this rank gets the result */
    Py_buffer s, r;
    PyObject *rt = NULL, *st = NULL; /* the TYPE of a [buf, count, TYPE] spec */
    if (inplace && !result)
        Py_RETURN_FALSE;
    if (result && !redbuf(args[6], &r, 1, &rt))
        Py_RETURN_FALSE;
    if (!inplace && !redbuf(args[5], &s, 0, &st)) {
        if (result)
            PyBuffer_Release(&r);
        Py_RETURN_FALSE;
    }
    Py_buffer *t = result ? &r : &s; /* whose element type and count */
    PyObject *tt = result ? rt : st;
    const char *tf = t->format ? t->format : "B";
    i64 code = 0;
    int sizes = kind == red_scatter ? s.len == parts * r.itemsize && r.len == mine * r.itemsize
                                     : s.len == r.len * parts;
    int both = result && !inplace;
    if (both && (st != NULL || rt != NULL))
        sizes = sizes && st == rt; /* two specs of one TYPE (a spec and a bare buffer: general path) */
    else if (both)
        sizes = sizes && s.itemsize == r.itemsize && strcmp(s.format ? s.format : "B", tf) == 0;
    if (!both || sizes)
        code = code_of(tf, t->itemsize, tt, op);
    if (code <= 0) {
        if (!inplace)
            PyBuffer_Release(&s);
        if (result)
            PyBuffer_Release(&r);
        if (code < 0)
            return NULL;
        Py_RETURN_FALSE;
    }
    i64 rc, req = 0;
    void *sa = inplace ? NULL : s.buf, *ra = result ? r.buf : NULL;
    i64 scap = inplace ? r.len : s.len, rcap = result ? r.len : 0;
    i64 count = kind == red_scatter ? parts : t->len / t->itemsize;
    CALLED(rc, nb, pm_reduce(h, kind, root, sa, scap, ra, rcap, count, k ? counts : NULL, k, code, op, nb ? &req : NULL));
    return ended(nb, rc, req, result ? &r : NULL, inplace ? NULL : &s);
}

/* ireduce: reduce's nonblocking form (the same arguments): its request, or
 * False for the general path. */
FORMS(reduce)

/* progress(handles): waits in one call for the requests of the runtime
 * handles in the list (0 for none), so that they move along together; each
 * is then collected with wait. Errors are left to those waits. */
static PyObject *f_progress(PyObject *self, PyObject *list)
{
    if (!bound) {
        PyErr_SetString(PyExc_RuntimeError, "pmrun._fast: bind() was not called");
        return NULL;
    }
    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "progress: a list of handles");
        return NULL;
    }
    Py_ssize_t k = PyList_GET_SIZE(list);
    i64 small[16], *hs = k <= 16 ? small : PyMem_Calloc(k, sizeof(i64));
    if (hs == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < k; i++) {
        hs[i] = PyLong_AsLongLong(PyList_GET_ITEM(list, i));
        if (hs[i] == -1 && PyErr_Occurred()) {
            if (hs != small)
                PyMem_Free(hs);
            return NULL;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    pm_waitall(hs, k);
    Py_END_ALLOW_THREADS
    if (hs != small)
        PyMem_Free(hs);
    Py_RETURN_NONE;
}

/* Whether kind (a request's _kind) is the interned k. */
static int kind_is(PyObject *kind, PyObject *k)
{
    return kind == k || !PyUnicode_Compare(kind, k); /* interned, else by value */
}

/* What handle_of says of a send that went out as it started (REQ_SENT). */
#define SENT_HERE (-3)

/* The runtime handle of request r when it is one of obj's kinds (0: a send,
 * a receive into a contiguous buffer or a collective, _kind "send", "buf"
 * or "coll", whose completion needs nothing but the handle; 1: an object
 * receive, "obj") with no _done; 0 when r is a null request or None,
 * SENT_HERE for a send that needs no wait, -1 (no error set) when r needs
 * Request._wait, -2 with an error. */
static long long handle_of(PyObject *r, int obj)
{
    if (r == Py_None)
        return 0;
    PyObject *h = get_field(r, F_H);
    if (h == NULL) {
        PyErr_Clear();
        return -1;
    }
    long long v = PyLong_AsLongLong(h);
    Py_DECREF(h);
    if (v == -1 && PyErr_Occurred())
        return -2;
    if (v == 0)
        return 0;
    if (v < 0 && v != REQ_SENT) /* on PROC_NULL: its status is made by Request._wait */
        return -1;
    PyObject *kind = get_field(r, F_KIND), *fin = get_field(r, F_DONE);
    int ok = kind != NULL && fin == Py_None && PyUnicode_Check(kind) &&
             (obj ? kind_is(kind, k_obj)
                  : kind_is(kind, k_send) || kind_is(kind, k_buf) || kind_is(kind, k_coll));
    Py_XDECREF(kind);
    Py_XDECREF(fin);
    PyErr_Clear();
    return !ok ? -1 : v == REQ_SENT ? SENT_HERE : v;
}

static long long plain_handle(PyObject *r)
{
    return handle_of(r, 0);
}

/* Makes request r, whose handle the runtime has freed, a null request. */
static int completed(PyObject *r)
{
    PyObject *keep = get_field(r, F_KEEP); /* the handle's owner */
    if (keep != NULL && Py_IS_TYPE(keep, &HeldType))
        ((Held *)keep)->h = 0;
    else if (keep != NULL && keep != Py_None && PyObject_SetAttr(keep, s_hh, zero) < 0)
        Py_CLEAR(keep);
    int rc = keep == NULL || set_field(r, F_H, zero) < 0 || set_field(r, F_KEEP, Py_None) < 0 ||
                     set_field(r, F_STATUS, Py_None) < 0
                 ? -1
                 : 0;
    Py_XDECREF(keep);
    return rc;
}

/* test1(request, status): Request.Test of a request that plain_handle
 * takes: False while it is pending; True once it completed (it is then null,
 * its status in status unless that is None); None when it needs the
 * general path (another kind of request, or it failed). */
static PyObject *f_test1(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    if (!bound || n != 2) {
        PyErr_SetString(PyExc_TypeError, "test1(request, status)");
        return NULL;
    }
    long long h = plain_handle(args[0]);
    if (h == -2)
        return NULL;
    if (h == SENT_HERE) {
        i64 done[4];
        done_status(args[0], done);
        if (completed(args[0]) < 0 || set_status(args[1], done) < 0)
            return NULL;
        Py_RETURN_TRUE;
    }
    if (h <= 0)
        Py_RETURN_NONE;
    i64 flag = 0, st[4] = {0, 0, 0, 0}, rc = pm_test_done(h, &flag, st);
    if (rc < 0 || (flag && st[3] != 0))
        Py_RETURN_NONE;
    if (!flag)
        Py_RETURN_FALSE;
    if (completed(args[0]) < 0 || set_status(args[1], st) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

/* probe(h, source, tag, status, block): Comm.Probe (block 1: waits, True)
 * or Comm.Iprobe (whether a message matches); the matching message's status
 * in status unless that is None. None for the general path (arguments that
 * are not ints, PROC_NULL, a null communicator). */
static PyObject *f_probe(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    long long a[3];
    switch (leading("probe", args, n, 5, 3, a)) {
    case -1:
        return NULL;
    case 0:
        Py_RETURN_NONE;
    }
    if (a[0] == 0 || a[1] == proc_null)
        Py_RETURN_NONE;
    i64 flag = 1, st[4] = {0, 0, 0, 0}, rc;
    if (PyObject_IsTrue(args[4])) {
        Py_BEGIN_ALLOW_THREADS
        rc = pm_probe(a[0], a[1], a[2], st);
        Py_END_ALLOW_THREADS
    } else
        rc = pm_iprobe(a[0], a[1], a[2], &flag, st);
    if (rc < 0) {
        fail(rc);
        return NULL;
    }
    if (flag && set_status(args[3], st) < 0)
        return NULL;
    return PyBool_FromLong(flag != 0);
}

/* The index of the only nonzero handle of hs (k of them), or -1. */
static Py_ssize_t lone_handle(const i64 *hs, Py_ssize_t k)
{
    Py_ssize_t j = -1;
    for (Py_ssize_t i = 0; i < k; i++)
        if (hs[i] != 0) {
            if (j >= 0)
                return -1;
            j = i;
        }
    return j;
}

/* Waits in one call into the runtime for the k requests reqs, if every one
 * of them is one that plain_handle takes, and fills sts[i] (when sts is not
 * NULL; Status objects) with the status of reqs[i]. 1: all completed, each
 * request now null. 0: they need the general path; nothing was waited for,
 * unless one of them failed: then those that succeeded are completed (null)
 * and the failed ones keep their handles, for their wait to raise the
 * error. -1: an error is set. With test, it does not wait: 2 when not all
 * of them have completed (nothing changed). */
static int wait_plain(PyObject *const *reqs, Py_ssize_t k, PyObject *const *sts, int test)
{
    note_thread();
    if (!bound) {
        PyErr_SetString(PyExc_RuntimeError, "pmrun._fast: bind() was not called");
        return -1;
    }
    /* hs: the handles, st: 4 status words each, own: references to the
     * requests and statuses, which another thread may take out of their
     * lists while this one waits without the GIL. */
    i64 small[8 * 8], *hs = k <= 8 ? small : PyMem_Calloc(k * 8, sizeof(i64)), failed;
    if (hs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    i64 *st = hs + k, *sent = hs + 7 * k; /* sent[i]: reqs[i] went out as it started */
    PyObject **own = (PyObject **)(hs + 5 * k);
    for (Py_ssize_t i = 0; i < k; i++) {
        own[i] = Py_NewRef(reqs[i]);
        own[k + i] = sts != NULL ? Py_NewRef(sts[i]) : NULL;
    }
    reqs = own;
    if (sts != NULL)
        sts = own + k;
    int res = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        long long h = plain_handle(reqs[i]);
        sent[i] = h == SENT_HERE;
        if (sent[i])
            h = 0; /* nothing for the runtime to wait for */
        if (h < 0) {
            res = h == -2 ? -1 : 0;
            goto out;
        }
        hs[i] = h;
    }
    Py_ssize_t active = 0;
    for (Py_ssize_t i = 0; i < k; i++)
        active += hs[i] != 0;
    Py_ssize_t j = test ? -1 : lone_handle(hs, k);
    pm_post e;
    if (active == 0) {
        /* Nothing for the runtime: sends that went out, collectives done,
         * as they started, and null requests (the empty status). */
        for (Py_ssize_t i = 0; i < k; i++)
            if (!sent[i]) {
                const i64 none[4] = {-1, -1, 0, 0};
                memcpy(st + 4 * i, none, sizeof none);
            }
        failed = 0;
    } else if (j >= 0 && take_back(hs[j], &e)) {
        /* A lazy receive, alone to wait for: received directly. */
        i64 rc;
        Py_BEGIN_ALLOW_THREADS
        rc = pm_recv(e.comm, e.src, e.tag, e.buf, e.cap, st + 4 * j);
        Py_END_ALLOW_THREADS
        unreserve(hs[j]);
        for (Py_ssize_t i = 0; i < k; i++)
            if (i != j && !sent[i]) { /* null requests: the empty status */
                const i64 none[4] = {-1, -1, 0, 0};
                memcpy(st + 4 * i, none, sizeof none);
            }
        if (rc < 0) { /* the request is done, with that error */
            res = -1;
            if (completed(reqs[j]) == 0)
                fail(rc);
            goto out;
        }
        failed = 0;
    } else if (test) {
        i64 flag = 0;
        failed = pm_testall_done(hs, k, &flag, st);
        if (failed >= 0 && !flag) {
            res = 2; /* not all done: nothing changed */
            goto out;
        }
    } else {
        Py_BEGIN_ALLOW_THREADS
        failed = pm_waitall_done(hs, k, st);
        Py_END_ALLOW_THREADS
    }
    if (failed < 0) { /* a handle the runtime does not know */
        fail(failed);
        res = -1;
        goto out;
    }
    res = -1;
    for (Py_ssize_t i = 0; i < k; i++) {
        if (sent[i])
            done_status(reqs[i], st + 4 * i);
        if ((hs[i] != 0 || sent[i]) && st[4 * i + 3] == 0 && completed(reqs[i]) < 0)
            goto out;
    }
    if (sts != NULL)
        for (Py_ssize_t i = 0; i < k; i++)
            if (st[4 * i + 3] == 0 && set_status(sts[i], st + 4 * i) < 0)
                goto out;
    res = failed == 0;
out:
    for (Py_ssize_t i = 0; i < 2 * k; i++)
        Py_XDECREF(own[i]);
    if (hs != small)
        PyMem_Free(hs);
    return res;
}

static PyObject *flag(int res)
{
    if (res < 0)
        return NULL;
    return PyBool_FromLong(res);
}

/* wait_req(request, status): Request.wait: None once a request that
 * plain_handle takes completed, the object an object receive (irecv_obj)
 * got, or GENERAL for the general path (another kind of request, or one
 * that failed: the general path reports it). */
static PyObject *f_wait_req(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    if (n != 2) {
        PyErr_SetString(PyExc_TypeError, "wait_req(request, status)");
        return NULL;
    }
    PyObject *r = args[0], *status = args[1];
    int res = wait_plain(args, 1, status == Py_None ? NULL : args + 1, 0);
    if (res < 0)
        return NULL;
    if (res > 0)
        Py_RETURN_NONE;
    long long h = handle_of(r, 1);
    if (h == -2)
        return NULL;
    char *s = scratch();
    if (h <= 0 || s == NULL)
        return Py_NewRef(general);
    i64 st[4] = {0, 0, 0, 0}, rc;
    PyObject *data = NULL;
    pm_post e;
    if (take_back(h, &e)) { /* a lazy receive: received directly */
        i64 blob = 0;
        Py_BEGIN_ALLOW_THREADS
        rc = pm_recv_any(e.comm, e.src, e.tag, s, SCRATCH, st, &blob);
        Py_END_ALLOW_THREADS
        unreserve(h);
        if (rc < 0) { /* the request is done, with that error */
            if (completed(r) == 0)
                fail(rc);
            return NULL;
        }
        if (rc == 1 && (data = take_blob(blob, st[2])) == NULL)
            return NULL;
        goto received;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = pm_wait_data(h, st, s, SCRATCH);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return Py_NewRef(general); /* its wait raises the error; the handle stays */
    if (rc == 1) { /* larger than the scratch: copied out, then freed */
        if ((data = PyByteArray_FromStringAndSize(NULL, st[2])) == NULL)
            return NULL;
        pm_req_data(h, PyByteArray_AS_STRING(data), st[2]);
        pm_req_free(h);
    }
received:
    if (completed(r) < 0 || set_status(status, st) < 0) {
        Py_XDECREF(data);
        return NULL;
    }
    return load(data, s, st[2]);
}

/* waitall(requests, statuses): Request.Waitall (see wait_plain) of a list,
 * with statuses None or a list of at least as many Status objects: True
 * when all completed, False for the general path. */
static PyObject *all_of(PyObject *const *args, Py_ssize_t n, int test);

static PyObject *f_waitall(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    return all_of(args, n, 0);
}

/* testall(requests, statuses): Request.Testall, as waitall: True when all
 * had completed (each now null), False when one is still pending (nothing
 * changed), None for the general path. */
static PyObject *f_testall(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    return all_of(args, n, 1);
}

static PyObject *all_of(PyObject *const *args, Py_ssize_t n, int test)
{
    if (n != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "waitall(requests, statuses): a list of requests");
        return NULL;
    }
    PyObject *list = args[0], *sts = args[1];
    Py_ssize_t k = PyList_GET_SIZE(list);
    PyObject *general_path = test ? Py_None : Py_False;
    if (sts != Py_None) {
        if (!PyList_Check(sts) || PyList_GET_SIZE(sts) < k)
            return Py_NewRef(general_path);
        for (Py_ssize_t i = 0; i < k; i++)
            if (PyList_GET_ITEM(sts, i) == Py_None)
                return Py_NewRef(general_path);
    }
    int res = wait_plain(((PyListObject *)list)->ob_item, k,
                         sts == Py_None ? NULL : ((PyListObject *)sts)->ob_item, test);
    if (res < 0)
        return NULL;
    if (res == 2)
        Py_RETURN_FALSE;
    return Py_NewRef(res ? Py_True : general_path);
}

/* wait1(request, status): Request.Wait (see wait_plain) of one request,
 * with status None or a Status: True when it completed, False for the
 * general path. */
static PyObject *f_wait1(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    if (n != 2) {
        PyErr_SetString(PyExc_TypeError, "wait1(request, status)");
        return NULL;
    }
    return flag(wait_plain(args, 1, args[1] == Py_None ? NULL : args + 1, 0));
}

/* waitany(requests, status): Request.Waitany of a list of requests that
 * plain_handle takes, some of them active: the index of the one that
 * completed (it is now null; its status in status unless that is None), or
 * None for the general path (another kind of request, none active, or the
 * one that completed failed: its wait reports it). */
static PyObject *f_waitany(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    if (!bound || n != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "waitany(requests, status): a list of requests");
        return NULL;
    }
    PyObject *list = args[0];
    Py_ssize_t k = PyList_GET_SIZE(list), active = 0;
    i64 small[16], *hs = k <= 16 ? small : PyMem_Calloc(k, sizeof(i64));
    if (hs == NULL)
        return PyErr_NoMemory();
    PyObject *res = Py_None;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *r = PyList_GET_ITEM(list, i);
        long long h = plain_handle(r);
        if (h == SENT_HERE) { /* complete already */
            i64 done[4];
            done_status(r, done);
            if (hs != small)
                PyMem_Free(hs);
            if (completed(r) < 0 || set_status(args[1], done) < 0)
                return NULL;
            return PyLong_FromSsize_t(i);
        }
        if (h < 0) {
            res = h == -2 ? NULL : Py_None;
            goto out;
        }
        hs[i] = h;
        active += h > 0;
    }
    if (active == 0)
        goto out;
    i64 index = -1, st[4] = {0, 0, 0, 0}, rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pm_waitany(hs, k, &index, st);
    Py_END_ALLOW_THREADS
    if (rc < 0 || index < 0 || index >= k || st[3] != 0)
        goto out; /* its wait reports the error */
    /* the list may have changed while the GIL was released */
    PyObject *r = index < PyList_GET_SIZE(list) ? PyList_GET_ITEM(list, index) : NULL;
    if (r == NULL || plain_handle(r) != hs[index]) {
        PyErr_Clear();
        goto out;
    }
    pm_req_free(hs[index]);
    if (completed(r) < 0 || set_status(args[1], st) < 0) {
        res = NULL;
        goto out;
    }
    res = NULL;
    PyObject *i = PyLong_FromLongLong(index);
    if (hs != small)
        PyMem_Free(hs);
    return i;
out:
    if (hs != small)
        PyMem_Free(hs);
    Py_XINCREF(res);
    return res;
}

/* bind_types(Op, IN_PLACE, Request): the predefined ops' class and
 * MPI.IN_PLACE, for reduce's checks, and the class of the requests that
 * isend and irecv make. */
static PyObject *f_bind_types(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    if (n != 3 || !PyType_Check(args[0]) || !PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "bind_types(Op, IN_PLACE, Request)");
        return NULL;
    }
    Py_XSETREF(op_type, Py_NewRef(args[0]));
    Py_XSETREF(in_place, Py_NewRef(args[1]));
    Py_XSETREF(request_type, (PyTypeObject *)Py_NewRef(args[2]));
    find_fields(request_type);
    Py_RETURN_NONE;
}

/* barrier(h) */
static PyObject *f_ibarrier(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    ARGS("ibarrier", 1, 1);
    if (a[0] == 0 || request_type == NULL)
        Py_RETURN_FALSE;
    i64 req = 0, rc = pm_barrier(a[0], &req);
    return started(rc, req, NULL, NULL);
}

static PyObject *f_barrier(PyObject *self, PyObject *const *args, Py_ssize_t n)
{
    ARGS("barrier", 1, 1);
    if (a[0] == 0)
        Py_RETURN_FALSE;
    i64 rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pm_barrier(a[0], NULL);
    Py_END_ALLOW_THREADS
    return done(rc);
}

static int addr_of(PyObject *d, const char *name, void **out)
{
    PyObject *v = PyDict_GetItemString(d, name);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "pmrun._fast.bind: no address for %s", name);
        return -1;
    }
    *out = PyLong_AsVoidPtr(v);
    return PyErr_Occurred() ? -1 : 0;
}

/* std_pickle(flag): whether MPI.pickle is the standard pickle, protocol 5. */
static PyObject *f_std_pickle(PyObject *self, PyObject *flag)
{
    int v = PyObject_IsTrue(flag);
    if (v < 0)
        return NULL;
    std_pickle = v && pk_dumps != NULL;
    Py_RETURN_NONE;
}

/* Keeps freed memory for reuse instead of returning it to the system at
 * once: glibc gives blocks of 128 KiB and more back (unmapped, or trimmed
 * off the heap's top) as they are freed, and the pickles and received
 * messages of a call are such blocks, made and freed every call; their pages
 * were then faulted in again, zeroed and charged, each time (object alltoall
 * of 64 KiB at 4 ranks on 2 cores: 1.7-2.1 ms, 0.32-0.33 with this). MPI
 * libraries tune malloc likewise. PMRUN_MALLOC=system, or glibc's own
 * MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_, leaves it alone. */
static void tune_malloc(void)
{
#ifdef __GLIBC__
    const char *how = getenv("PMRUN_MALLOC");
    if ((how != NULL && strcmp(how, "system") == 0) || getenv("MALLOC_MMAP_THRESHOLD_") != NULL ||
        getenv("MALLOC_TRIM_THRESHOLD_") != NULL)
        return;
    mallopt(M_MMAP_THRESHOLD, 32 << 20); /* glibc's largest */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

/* bind(addresses, raise_rc, dumps, loads, joined, typecode, PROC_NULL, RED_ALLREDUCE,
 * RED_SCATTER_BLOCK, RED_SCATTER) */
static PyObject *f_bind(PyObject *self, PyObject *args)
{
    PyObject *d, *fr, *fd, *fl, *fj, *ft;
    long long pn, ra, rs, rsc;
    if (!PyArg_ParseTuple(args, "O!OOOOOLLLL", &PyDict_Type, &d, &fr, &fd, &fl, &fj, &ft, &pn, &ra, &rs, &rsc))
        return NULL;
    if (addr_of(d, "pm_send", (void **)&pm_send) < 0 ||
        addr_of(d, "pm_sendv", (void **)&pm_sendv) < 0 ||
        addr_of(d, "pm_recv", (void **)&pm_recv) < 0 ||
        addr_of(d, "pm_recv_obj", (void **)&pm_recv_obj) < 0 ||
        addr_of(d, "pm_recv_any", (void **)&pm_recv_any) < 0 ||
        addr_of(d, "pm_bcast", (void **)&pm_bcast) < 0 ||
        addr_of(d, "pm_gather", (void **)&pm_gather) < 0 ||
        addr_of(d, "pm_scatter", (void **)&pm_scatter) < 0 ||
        addr_of(d, "pm_reduce", (void **)&pm_reduce) < 0 ||
        addr_of(d, "pm_barrier", (void **)&pm_barrier) < 0 ||
        addr_of(d, "pm_waitall", (void **)&pm_waitall) < 0 ||
        addr_of(d, "pm_waitall_done", (void **)&pm_waitall_done) < 0 ||
        addr_of(d, "pm_test_done", (void **)&pm_test_done) < 0 ||
        addr_of(d, "pm_testall_done", (void **)&pm_testall_done) < 0 ||
        addr_of(d, "pm_threads", (void **)&pm_threads) < 0 ||
        addr_of(d, "pm_scatterv", (void **)&pm_scatterv) < 0 ||
        addr_of(d, "pm_alltoallv", (void **)&pm_alltoallv) < 0 ||
        addr_of(d, "pm_waitany", (void **)&pm_waitany) < 0 ||
        addr_of(d, "pm_wait_data", (void **)&pm_wait_data) < 0 ||
        addr_of(d, "pm_req_data", (void **)&pm_req_data) < 0 ||
        addr_of(d, "pm_alltoall", (void **)&pm_alltoall) < 0 ||
        addr_of(d, "pm_gatherv", (void **)&pm_gatherv) < 0 ||
        addr_of(d, "pm_iprobe", (void **)&pm_iprobe) < 0 ||
        addr_of(d, "pm_probe", (void **)&pm_probe) < 0 ||
        addr_of(d, "pm_sendrecv", (void **)&pm_sendrecv) < 0 ||
        addr_of(d, "pm_bcast_obj", (void **)&pm_bcast_obj) < 0 ||
        addr_of(d, "pm_isend", (void **)&pm_isend) < 0 ||
        addr_of(d, "pm_isend_now", (void **)&pm_isend_now) < 0 ||
        addr_of(d, "pm_gather_obj", (void **)&pm_gather_obj) < 0 ||
        addr_of(d, "pm_scatter_obj", (void **)&pm_scatter_obj) < 0 ||
        addr_of(d, "pm_alltoall_obj", (void **)&pm_alltoall_obj) < 0 ||
        addr_of(d, "pm_irecv", (void **)&pm_irecv) < 0 ||
        addr_of(d, "pm_wait", (void **)&pm_wait) < 0 ||
        addr_of(d, "pm_req_free", (void **)&pm_req_free) < 0 ||
        addr_of(d, "pm_blob_take", (void **)&pm_blob_take) < 0 ||
        addr_of(d, "pm_posts_area", (void **)&pm_posts_area) < 0 ||
        addr_of(d, "pm_req_reserve", (void **)&pm_req_reserve) < 0)
        return NULL;
    i64 layout = 0;
    posts = (pm_posts_t *)(intptr_t)pm_posts_area(&layout, &lazy_limit);
    if (layout != (i64)sizeof(pm_posts_t) || lazy_limit <= 0)
        posts = NULL;
    Py_XSETREF(raise_rc, Py_NewRef(fr));
    Py_XSETREF(dumps, Py_NewRef(fd));
    Py_XSETREF(loads, Py_NewRef(fl));
    Py_XSETREF(typecode, Py_NewRef(ft));
    Py_XSETREF(joined, Py_NewRef(fj));
    if (pk_dumps == NULL) {
        PyObject *m = PyImport_ImportModule("pickle");
        if (m == NULL)
            return NULL;
        pk_dumps = PyObject_GetAttrString(m, "dumps");
        pk_loads = PyObject_GetAttrString(m, "loads");
        Py_DECREF(m);
        five = PyLong_FromLong(5);
        release_name = PyUnicode_InternFromString("release");
        oob_cb = PyCFunction_New(&found_buffer_def, NULL);
        buffer_callback_kw = Py_BuildValue("(s)", "buffer_callback");
        if (pk_dumps == NULL || pk_loads == NULL || five == NULL || release_name == NULL ||
            oob_cb == NULL || buffer_callback_kw == NULL) {
            Py_CLEAR(pk_dumps);
            Py_CLEAR(pk_loads);
            return NULL;
        }
    }
    proc_null = pn;
    red_allreduce = ra;
    red_scatter_block = rs;
    red_scatter = rsc;
    if (!bound)
        tune_malloc();
    ncodes = 0;
    bound = 1;
    Py_RETURN_NONE;
}


/* ---- MPI.memory: raw memory with the buffer protocol (mpi4py's) ---- */

/* A span of bytes: another object's exported buffer (obj, held in view), a
 * bytearray of its own (allocate), or an address (fromaddress; base keeps
 * what owns it alive: the memory a slice or toreadonly was made from). */
typedef struct {
    PyObject_HEAD
    char *buf;
    Py_ssize_t len;
    int readonly;
    PyObject *obj;  /* what the memory is of, or NULL (None) */
    PyObject *base; /* keeps buf alive (a memory object, or NULL) */
    Py_buffer view; /* held export of obj, view.obj NULL when none */
    Py_ssize_t exports;
} Memory;

static PyTypeObject MemoryType;

static Memory *memory_alloc(PyTypeObject *cls)
{
    Memory *m = (Memory *)cls->tp_alloc(cls, 0);
    if (m != NULL) {
        m->buf = NULL;
        m->len = 0;
        m->readonly = 0;
        m->obj = m->base = NULL;
        memset(&m->view, 0, sizeof m->view);
        m->exports = 0;
    }
    return m;
}

static void memory_clear(Memory *m)
{
    if (m->view.obj != NULL)
        PyBuffer_Release(&m->view);
    Py_CLEAR(m->obj);
    Py_CLEAR(m->base);
    m->buf = NULL;
    m->len = 0;
    m->readonly = 0;
}

static void memory_dealloc(Memory *m)
{
    memory_clear(m);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

/* A memory of cls over obj's buffer, writable unless readonly (-1: as obj
 * exports it). */
static PyObject *memory_of(PyTypeObject *cls, PyObject *obj, int readonly)
{
    if (!PyObject_CheckBuffer(obj)) {
        PyErr_Format(PyExc_TypeError, "memory: expected a buffer object, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    Memory *m = memory_alloc(cls);
    if (m == NULL)
        return NULL;
    int rc;
    if (readonly == 1) {
        rc = PyObject_GetBuffer(obj, &m->view, PyBUF_SIMPLE);
    } else {
        rc = PyObject_GetBuffer(obj, &m->view, PyBUF_WRITABLE);
        if (rc < 0 && readonly == -1) {
            PyErr_Clear();
            rc = PyObject_GetBuffer(obj, &m->view, PyBUF_SIMPLE);
        }
    }
    if (rc < 0) {
        memset(&m->view, 0, sizeof m->view);
        Py_DECREF(m);
        return NULL;
    }
    m->buf = m->view.buf;
    m->len = m->view.len;
    m->readonly = readonly == 1 || m->view.readonly;
    m->obj = Py_NewRef(obj);
    return (PyObject *)m;
}

static PyObject *memory_new(PyTypeObject *cls, PyObject *args, PyObject *kw)
{
    PyObject *obj = NULL;
    static char *names[] = {"buf", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:memory", names, &obj))
        return NULL;
    if (obj == NULL)
        return (PyObject *)memory_alloc(cls);
    return memory_of(cls, obj, -1);
}

static PyObject *memory_frombuffer(PyObject *cls, PyObject *args, PyObject *kw)
{
    PyObject *obj;
    int readonly = 0;
    static char *names[] = {"obj", "readonly", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p:frombuffer", names, &obj, &readonly))
        return NULL;
    return memory_of((PyTypeObject *)cls, obj, readonly);
}

static PyObject *memory_fromaddress(PyObject *cls, PyObject *args, PyObject *kw)
{
    PyObject *address;
    Py_ssize_t nbytes;
    int readonly = 0;
    static char *names[] = {"address", "nbytes", "readonly", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "On|p:fromaddress", names, &address, &nbytes,
                                     &readonly))
        return NULL;
    void *p = PyLong_AsVoidPtr(address);
    if (p == NULL && PyErr_Occurred())
        return NULL;
    if (nbytes < 0) {
        PyErr_Format(PyExc_ValueError, "fromaddress: negative size %zd", nbytes);
        return NULL;
    }
    if (p == NULL && nbytes > 0) {
        PyErr_SetString(PyExc_ValueError, "fromaddress: a null address of a nonempty memory");
        return NULL;
    }
    Memory *m = memory_alloc((PyTypeObject *)cls);
    if (m != NULL) {
        m->buf = p;
        m->len = nbytes;
        m->readonly = readonly;
    }
    return (PyObject *)m;
}

static PyObject *memory_allocate(PyObject *cls, PyObject *args, PyObject *kw)
{
    PyObject *size;
    int clear = 0;
    static char *names[] = {"nbytes", "clear", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p:allocate", names, &size, &clear))
        return NULL;
    if (!PyLong_Check(size)) {
        PyErr_Format(PyExc_TypeError, "allocate: expected an integer size, not %.100s",
                     Py_TYPE(size)->tp_name);
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(size);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "allocate: negative size %zd", n);
        return NULL;
    }
    PyObject *bytes = PyByteArray_FromStringAndSize(NULL, n); /* zeroed or not: see below */
    if (bytes == NULL)
        return NULL;
    if (n > 0)
        memset(PyByteArray_AS_STRING(bytes), 0, n); /* always cleared: no stale data leaks */
    PyObject *m = memory_of((PyTypeObject *)cls, bytes, 0);
    Py_DECREF(bytes);
    return m;
}

/* release lets go of the memory: it reads as empty from then on. Views
 * exported before keep what they need (obj's export) until this object
 * goes, as they point into it. */
static PyObject *memory_release(Memory *m, PyObject *unused)
{
    if (m->exports == 0) {
        memory_clear(m);
    } else {
        m->buf = NULL;
        m->len = 0;
        m->readonly = 0;
    }
    Py_RETURN_NONE;
}

/* tobytes(order=None): the order (mpi4py 4's argument) changes nothing for
 * contiguous bytes. */
static PyObject *memory_tobytes(Memory *m, PyObject *const *args, Py_ssize_t n, PyObject *kw)
{
    Py_ssize_t nkw = kw == NULL ? 0 : PyTuple_GET_SIZE(kw);
    if (n + nkw > 1 || (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kw, 0), "order") != 0)) {
        PyErr_SetString(PyExc_TypeError, "tobytes(order=None)");
        return NULL;
    }
    return PyBytes_FromStringAndSize(m->buf, m->len);
}

/* A memory of m's bytes lo..lo+n (m kept alive as its base). */
static PyObject *memory_span(Memory *m, Py_ssize_t lo, Py_ssize_t n, int readonly)
{
    Memory *v = memory_alloc(Py_TYPE(m));
    if (v == NULL)
        return NULL;
    v->buf = m->buf == NULL ? NULL : m->buf + lo;
    v->len = n;
    v->readonly = readonly;
    v->obj = Py_XNewRef(m->obj);
    v->base = Py_NewRef((PyObject *)m);
    return (PyObject *)v;
}

static PyObject *memory_toreadonly(Memory *m, PyObject *unused)
{
    return memory_span(m, 0, m->len, 1);
}

static int memory_getbuffer(Memory *m, Py_buffer *view, int flags)
{
    if ((flags & PyBUF_WRITABLE) && m->readonly) {
        PyErr_SetString(PyExc_BufferError, "memory buffer is read-only");
        return -1;
    }
    static char empty[1];
    if (PyBuffer_FillInfo(view, (PyObject *)m, m->buf != NULL ? m->buf : empty, m->len,
                          m->readonly, flags) < 0)
        return -1;
    m->exports++;
    return 0;
}

static void memory_releasebuffer(Memory *m, Py_buffer *view)
{
    m->exports--;
}

static Py_ssize_t memory_length(Memory *m)
{
    return m->len;
}

/* memory_range reads key, an index or a step-1 slice of m, into the bytes
 * lo..lo+n it names: 1 for an index (n 1), 2 for a slice, -1 with an error
 * set (IndexError out of range or for another step, TypeError for another
 * key). */
static int memory_range(Memory *m, PyObject *key, Py_ssize_t *lo, Py_ssize_t *n)
{
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return -1;
        if (i < 0)
            i += m->len;
        if (i < 0 || i >= m->len) {
            PyErr_SetString(PyExc_IndexError, "memory index out of range");
            return -1;
        }
        *lo = i;
        *n = 1;
        return 1;
    }
    if (PySlice_Check(key)) {
        Py_ssize_t hi, step;
        if (PySlice_Unpack(key, lo, &hi, &step) < 0)
            return -1;
        *n = PySlice_AdjustIndices(m->len, lo, &hi, step);
        if (step != 1) {
            PyErr_SetString(PyExc_IndexError, "memory slice step must be 1");
            return -1;
        }
        return 2;
    }
    PyErr_Format(PyExc_TypeError, "memory indices must be integers or slices, not %.100s",
                 Py_TYPE(key)->tp_name);
    return -1;
}

static PyObject *memory_subscript(Memory *m, PyObject *key)
{
    Py_ssize_t lo, n;
    switch (memory_range(m, key, &lo, &n)) {
    case 1:
        return PyLong_FromLong((unsigned char)m->buf[lo]);
    case 2:
        return memory_span(m, lo, n, m->readonly);
    }
    return NULL;
}

static int memory_ass_subscript(Memory *m, PyObject *key, PyObject *value)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_NotImplementedError, "memory items cannot be deleted");
        return -1;
    }
    if (m->readonly) {
        PyErr_SetString(PyExc_TypeError, "memory buffer is read-only");
        return -1;
    }
    Py_ssize_t lo, n;
    if (memory_range(m, key, &lo, &n) < 0)
        return -1;
    if (PyLong_Check(value)) { /* a byte, or (a slice) every byte of it */
        long b = PyLong_AsLong(value);
        if (b == -1 && PyErr_Occurred())
            return -1;
        if (b < 0 || b > 255) {
            PyErr_SetString(PyExc_ValueError, "memory: a byte must be in range(0, 256)");
            return -1;
        }
        if (n > 0)
            memset(m->buf + lo, (int)b, n);
        return 0;
    }
    Py_buffer v;
    if (PyObject_GetBuffer(value, &v, PyBUF_SIMPLE) < 0)
        return -1;
    int rc = 0;
    if (v.len != n) {
        PyErr_Format(PyExc_ValueError, "memory: %zd bytes into a slice of %zd", v.len, n);
        rc = -1;
    } else if (n > 0) {
        memmove(m->buf + lo, v.buf, n);
    }
    PyBuffer_Release(&v);
    return rc;
}

static PyObject *memory_get_address(Memory *m, void *unused)
{
    return PyLong_FromVoidPtr(m->buf);
}

static PyObject *memory_get_obj(Memory *m, void *unused)
{
    return Py_NewRef(m->obj != NULL && m->buf != NULL ? m->obj : Py_None);
}

static PyObject *memory_get_nbytes(Memory *m, void *unused)
{
    return PyLong_FromSsize_t(m->len);
}

static PyObject *memory_get_readonly(Memory *m, void *unused)
{
    return PyBool_FromLong(m->readonly);
}

static PyObject *memory_get_format(Memory *m, void *unused)
{
    return PyUnicode_FromString("B");
}

static PyObject *memory_get_itemsize(Memory *m, void *unused)
{
    return PyLong_FromLong(1);
}

static PyGetSetDef memory_getset[] = {
    {"address", (getter)memory_get_address, NULL, "the memory's address (0 when empty)", NULL},
    {"obj", (getter)memory_get_obj, NULL, "the object whose memory it is, or None", NULL},
    {"nbytes", (getter)memory_get_nbytes, NULL, "its size in bytes", NULL},
    {"readonly", (getter)memory_get_readonly, NULL, "whether it may not be written", NULL},
    {"format", (getter)memory_get_format, NULL, "'B': bytes", NULL},
    {"itemsize", (getter)memory_get_itemsize, NULL, "1", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef memory_methods[] = {
    {"frombuffer", (PyCFunction)(void (*)(void))memory_frombuffer,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, "frombuffer(obj, readonly=False): obj's memory"},
    {"fromaddress", (PyCFunction)(void (*)(void))memory_fromaddress,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "fromaddress(address, nbytes, readonly=False): the memory at an address"},
    {"allocate", (PyCFunction)(void (*)(void))memory_allocate,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, "allocate(nbytes, clear=False): new memory"},
    {"release", (PyCFunction)memory_release, METH_NOARGS, "lets go of the memory"},
    {"tobytes", (PyCFunction)(void (*)(void))memory_tobytes, METH_FASTCALL | METH_KEYWORDS,
     "tobytes(order=None): a copy of the bytes"},
    {"toreadonly", (PyCFunction)memory_toreadonly, METH_NOARGS, "a read-only view"},
    {NULL, NULL, 0, NULL},
};

static PyBufferProcs memory_as_buffer = {
    (getbufferproc)memory_getbuffer,
    (releasebufferproc)memory_releasebuffer,
};

static PyMappingMethods memory_as_mapping = {
    (lenfunc)memory_length,
    (binaryfunc)memory_subscript,
    (objobjargproc)memory_ass_subscript,
};

static PySequenceMethods memory_as_sequence = {
    .sq_length = (lenfunc)memory_length,
};

static PyTypeObject MemoryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pmrun._fast.memory",
    .tp_basicsize = sizeof(Memory),
    .tp_dealloc = (destructor)memory_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "memory(buf=None): raw memory with the buffer protocol, as mpi4py's MPI.memory",
    .tp_new = memory_new,
    .tp_methods = memory_methods,
    .tp_getset = memory_getset,
    .tp_as_buffer = &memory_as_buffer,
    .tp_as_mapping = &memory_as_mapping,
    .tp_as_sequence = &memory_as_sequence,
};

#if PY_VERSION_HEX >= 0x03090000
/* Methods without a Python frame.
 *
 * method(fallback, target, recipe, result, cls) makes a descriptor that
 * stands for the Python method fallback (a plain function whose first
 * parameter is self, or cls: a classmethod's function) in its class: a call
 * binds its arguments by fallback's parameters and defaults, builds target's
 * arguments by recipe and calls target (one of this module's functions)
 * straight away; when target says "the general path" (or the arguments do
 * not bind: too many, an unknown keyword), fallback runs with the call's own
 * arguments, so that it gives the general path's results and errors. A
 * Python method's frame, its binding of keywords and its global lookups took
 * 0.1-0.15 us of each call: 0.36 us of an Irecv+Isend+Waitall exchange of 8
 * bytes that took 2.0.
 *
 * recipe is a tuple of steps, each (kind, index, value):
 *   ARG_PARAM i      target's next argument is parameter i (after self)
 *   ARG_SELF         self
 *   ARG_H            self._h
 *   ARG_SIZE         self._size
 *   ARG_RANK_IS i    self._rank == parameter i, as a bool
 *   ARG_CONST        value
 *   NEED_NONE i      the general path unless parameter i is None
 *   NEED_SOME i      the general path if parameter i is None
 *   NEED_FALSE i     the general path if parameter i is true
 *   NEED_NOT i       the general path if parameter i == value
 *   NEED_H           the general path if self._h is 0
 *   NEED_LIST i      the general path unless parameter i is a list
 * result says what target's result means: RES_DONE (true: done, the call
 * returns None; false: the general path), RES_TRUE (the same, returning
 * True), RES_VALUE (the call's result, unless it is False: the general
 * path), RES_GENERAL (the call's result, unless it is GENERAL: the general
 * path), RES_ANY (the call's result). */
enum { ARG_PARAM, ARG_SELF, ARG_H, ARG_SIZE, ARG_RANK_IS, ARG_CONST, NEED_NONE, NEED_SOME, NEED_FALSE, NEED_NOT, NEED_H, NEED_LIST };
enum { RES_DONE, RES_TRUE, RES_VALUE, RES_GENERAL, RES_ANY };
#define FM_PARAMS 8
#define FM_STEPS 12

static Py_ssize_t min_ssize(Py_ssize_t a, Py_ssize_t b) { return a < b ? a : b; }

typedef PyObject *(*fastfn)(PyObject *, PyObject *const *, Py_ssize_t);

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fallback, *target, *names, *defaults;
    PyObject *qualname;       /* fallback's, for current_method */
    const char *name, *file;  /* fallback's name and file, for tracebacks */
    int line;
    PyObject *code;           /* holds name and file */
    fastfn fn;
    Py_ssize_t nparams, ndefaults;
    int nsteps, result, cls;
    struct {
        int kind, idx;
        PyObject *value;
    } step[FM_STEPS];
} FastMethod;

static PyObject *s_rank, *s_size_attr; /* "_rank", "_size" */

#if PY_VERSION_HEX >= 0x030D0000 /* internal since 3.13, still exported */
PyAPI_FUNC(void) _PyTraceback_Add(const char *, const char *, int);
#endif

/* The method whose target runs on this thread (the innermost): an error
 * raised meanwhile names it (current_method), there being no frame of it
 * up the stack. */
static __thread FastMethod *fm_current;

/* The general path: fallback with the call's arguments (a classmethod's
 * gets the class first: its descriptor type binds the class, see
 * FastClassMethodType). */
static PyObject *fm_general(FastMethod *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return PyObject_Vectorcall(m->fallback, args, nargsf, kwnames);
}

static PyObject *fm_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FastMethod *m = (FastMethod *)callable;
    Py_ssize_t n = PyVectorcall_NARGS(nargsf), np = n - 1;
    if (n < 1 || np > m->nparams)
        return fm_general(m, args, nargsf, kwnames);
    PyObject *self = args[0], *v[FM_PARAMS];
    for (Py_ssize_t i = 0; i < m->nparams; i++)
        v[i] = i < np ? args[1 + i] : NULL;
    if (kwnames != NULL) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            Py_ssize_t j = 0;
            while (j < m->nparams && PyTuple_GET_ITEM(m->names, j) != key)
                j++;
            if (j == m->nparams) /* not interned alike: compare the text */
                for (j = 0; j < m->nparams; j++)
                    if (PyUnicode_Compare(PyTuple_GET_ITEM(m->names, j), key) == 0)
                        break;
            if (PyErr_Occurred())
                PyErr_Clear();
            if (j == m->nparams || v[j] != NULL)
                return fm_general(m, args, nargsf, kwnames); /* its TypeError */
            v[j] = args[n + k];
        }
    }
    Py_ssize_t first = m->nparams - m->ndefaults;
    for (Py_ssize_t i = 0; i < m->nparams; i++)
        if (v[i] == NULL) {
            if (i < first)
                return fm_general(m, args, nargsf, kwnames);
            v[i] = PyTuple_GET_ITEM(m->defaults, i - first);
        }
    PyObject *argv[FM_STEPS], *owned[FM_STEPS];
    int na = 0, no = 0, slow = 0; /* slow: the general path */
    PyObject *res = NULL, *h = NULL;
    for (int s = 0; s < m->nsteps && !slow; s++) {
        int i = m->step[s].idx;
        PyObject *a = NULL;
        switch (m->step[s].kind) {
        case ARG_PARAM:
            argv[na++] = v[i];
            continue;
        case ARG_SELF:
            argv[na++] = self;
            continue;
        case ARG_CONST:
            argv[na++] = m->step[s].value;
            continue;
        case ARG_H:
        case NEED_H:
            if (h == NULL && (h = PyObject_GetAttr(self, s_h)) == NULL)
                goto out;
            if (m->step[s].kind == NEED_H) {
                int t = PyObject_IsTrue(h);
                if (t < 0)
                    goto out;
                slow = !t;
                continue;
            }
            argv[na++] = h;
            continue;
        case ARG_SIZE:
            a = PyObject_GetAttr(self, s_size_attr);
            break;
        case ARG_RANK_IS: {
            PyObject *r = PyObject_GetAttr(self, s_rank);
            if (r == NULL)
                goto out;
            int eq = PyObject_RichCompareBool(r, v[i], Py_EQ);
            Py_DECREF(r);
            if (eq < 0)
                goto out;
            a = Py_NewRef(eq ? Py_True : Py_False);
            break;
        }
        case NEED_NONE:
            slow = v[i] != Py_None;
            continue;
        case NEED_SOME:
            slow = v[i] == Py_None;
            continue;
        case NEED_LIST:
            slow = !PyList_CheckExact(v[i]);
            continue;
        case NEED_FALSE: {
            int t = PyObject_IsTrue(v[i]);
            if (t < 0)
                goto out;
            slow = t;
            continue;
        }
        case NEED_NOT: {
            int eq = PyObject_RichCompareBool(v[i], m->step[s].value, Py_EQ);
            if (eq < 0)
                goto out;
            slow = eq;
            continue;
        }
        }
        if (a == NULL)
            goto out;
        owned[no++] = argv[na++] = a;
    }
    if (!slow) {
        FastMethod *outer = fm_current;
        fm_current = m;
        res = m->fn(NULL, argv, na);
        fm_current = outer;
        if (res == NULL) /* the traceback shows the method the user called */
            _PyTraceback_Add(m->name, m->file, m->line);
        if (res != NULL && m->result != RES_ANY) {
            int t = m->result == RES_VALUE     ? res != Py_False
                    : m->result == RES_GENERAL ? res != general
                                               : PyObject_IsTrue(res);
            if (t < 0)
                Py_CLEAR(res);
            else if (!t) {
                slow = 1;
                Py_CLEAR(res);
            }
            else if (m->result == RES_DONE || m->result == RES_TRUE)
                Py_SETREF(res, Py_NewRef(m->result == RES_TRUE ? Py_True : Py_None));
        }
    }
out:
    Py_XDECREF(h);
    while (no > 0)
        Py_DECREF(owned[--no]);
    if (slow && !PyErr_Occurred())
        return fm_general(m, args, nargsf, kwnames);
    return res;
}

static PyObject *fm_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (((FastMethod *)self)->cls)
        return PyMethod_New(self, type != NULL ? type : (PyObject *)Py_TYPE(obj));
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

/* __name__, __doc__ and the rest are fallback's. */
static PyObject *fm_getattro(PyObject *self, PyObject *name)
{
    PyObject *r = PyObject_GenericGetAttr(self, name);
    if (r != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return r;
    PyErr_Clear();
    return PyObject_GetAttr(((FastMethod *)self)->fallback, name);
}

static PyObject *fm_repr(PyObject *self) { return PyObject_Repr(((FastMethod *)self)->fallback); }

/* Setting one (__module__, __doc__) sets fallback's. */
static int fm_setattro(PyObject *self, PyObject *name, PyObject *value)
{
    return PyObject_SetAttr(((FastMethod *)self)->fallback, name, value);
}

/* current_method() -> the qualified name of the method of this module
 * whose call is running on this thread, or None. */
static PyObject *f_current_method(PyObject *self, PyObject *unused)
{
    return Py_NewRef(fm_current != NULL ? fm_current->qualname : Py_None);
}

static void fm_dealloc(FastMethod *m)
{
    Py_XDECREF(m->qualname);
    Py_XDECREF(m->code);
    Py_XDECREF(m->fallback);
    Py_XDECREF(m->target);
    Py_XDECREF(m->names);
    Py_XDECREF(m->defaults);
    for (int s = 0; s < m->nsteps; s++)
        Py_XDECREF(m->step[s].value);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static PyObject *fm_wrapped(FastMethod *m, void *closure) { return Py_NewRef(m->fallback); }
static PyObject *fm_doc(FastMethod *m, void *closure) { return PyObject_GetAttrString(m->fallback, "__doc__"); }

static PyGetSetDef fm_getset[] = {
    {"__wrapped__", (getter)fm_wrapped, NULL, "the Python method this one stands for", NULL},
    {"__doc__", (getter)fm_doc, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject FastMethodType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pmrun._fast.method",
    .tp_basicsize = sizeof(FastMethod),
    .tp_dealloc = (destructor)fm_dealloc,
    .tp_vectorcall_offset = offsetof(FastMethod, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_getattro = fm_getattro,
    .tp_setattro = fm_setattro,
    .tp_repr = fm_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_descr_get = fm_get,
    .tp_getset = fm_getset,
};

/* A classmethod's: FastMethodType without Py_TPFLAGS_METHOD_DESCRIPTOR, as
 * the interpreter calls such a descriptor found on a class without the
 * class (as a function); made at the module's init. */
static PyTypeObject FastClassMethodType;

/* The UTF-8 text of code's attribute attr (a str, kept by code), or NULL
 * with an error. */
static const char *code_text(PyObject *code, const char *attr)
{
    PyObject *v = PyObject_GetAttrString(code, attr);
    if (v == NULL)
        return NULL;
    const char *t = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
    if (t == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "method: %s is not a str", attr);
    Py_DECREF(v); /* code holds it */
    return t;
}

/* method(fallback, target, recipe, result, cls): see FastMethod. */
static PyObject *f_method(PyObject *self, PyObject *args)
{
    PyObject *fallback, *target, *recipe;
    int result, cls;
    if (!PyArg_ParseTuple(args, "OOO!ip", &fallback, &target, &PyTuple_Type, &recipe, &result, &cls))
        return NULL;
    if (!PyCFunction_Check(target) || PyCFunction_GET_FLAGS(target) != METH_FASTCALL) {
        PyErr_SetString(PyExc_TypeError, "method: target is not a fast-call function of this module");
        return NULL;
    }
    PyObject *code = PyObject_GetAttrString(fallback, "__code__");
    PyObject *names = NULL, *defaults = NULL, *argc = NULL, *varnames = NULL;
    FastMethod *m = NULL;
    if (code == NULL || (argc = PyObject_GetAttrString(code, "co_argcount")) == NULL ||
        (varnames = PyObject_GetAttrString(code, "co_varnames")) == NULL ||
        (defaults = PyObject_GetAttrString(fallback, "__defaults__")) == NULL)
        goto out;
    Py_ssize_t nparams = PyLong_AsSsize_t(argc) - 1;
    if (nparams < 0 || nparams > FM_PARAMS || PyTuple_GET_SIZE(recipe) > FM_STEPS || result < RES_DONE ||
        result > RES_ANY) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "method: too many parameters or steps, or no such result");
        goto out;
    }
    if (defaults == Py_None)
        Py_SETREF(defaults, PyTuple_New(0));
    if (defaults == NULL || (names = PyTuple_GetSlice(varnames, 1, 1 + nparams)) == NULL)
        goto out;
    PyObject *qualname = PyObject_GetAttrString(fallback, "__qualname__"), *lineno = NULL;
    const char *cname = NULL, *cfile = NULL;
    int line = 0;
    if (qualname == NULL || (lineno = PyObject_GetAttrString(code, "co_firstlineno")) == NULL ||
        (line = PyLong_AsLong(lineno)) == -1 || (cname = code_text(code, "co_name")) == NULL ||
        (cfile = code_text(code, "co_filename")) == NULL ||
        (m = PyObject_New(FastMethod, cls ? &FastClassMethodType : &FastMethodType)) == NULL) {
        Py_XDECREF(qualname);
        Py_XDECREF(lineno);
        goto out;
    }
    Py_DECREF(lineno);
    m->qualname = qualname;
    m->code = Py_NewRef(code);
    m->name = cname;
    m->file = cfile;
    m->line = line;
    m->vectorcall = fm_call;
    m->fallback = Py_NewRef(fallback);
    m->target = Py_NewRef(target);
    m->fn = (fastfn)(void (*)(void))PyCFunction_GET_FUNCTION(target);
    m->names = Py_NewRef(names);
    m->defaults = Py_NewRef(defaults);
    m->nparams = nparams;
    m->ndefaults = min_ssize(PyTuple_GET_SIZE(defaults), nparams);
    m->result = result;
    m->cls = cls;
    m->nsteps = 0;
    for (Py_ssize_t s = 0; s < PyTuple_GET_SIZE(recipe); s++) {
        PyObject *st = PyTuple_GET_ITEM(recipe, s), *value = NULL;
        int kind, idx;
        if (!PyArg_ParseTuple(st, "ii|O", &kind, &idx, &value) || kind < ARG_PARAM || kind > NEED_LIST ||
            idx < 0 || idx >= (nparams ? nparams : 1)) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "method: bad step %zd", s);
            Py_CLEAR(m);
            goto out;
        }
        m->step[s].kind = kind;
        m->step[s].idx = idx;
        m->step[s].value = Py_XNewRef(value);
        m->nsteps++;
    }
out:
    Py_XDECREF(code);
    Py_XDECREF(argc);
    Py_XDECREF(varnames);
    Py_XDECREF(names);
    Py_XDECREF(defaults);
    return (PyObject *)m;
}
#endif

static PyMethodDef methods[] = {
    {"bind", f_bind, METH_VARARGS, "bind(addresses, raise_rc, dumps, loads, joined, typecode, PROC_NULL, RED_ALLREDUCE, RED_SCATTER_BLOCK)"},
    {"std_pickle", f_std_pickle, METH_O, "std_pickle(flag): whether MPI.pickle is pickle with protocol 5"},
    {"send", (PyCFunction)(void (*)(void))f_send, METH_FASTCALL, "send(h, dest, tag, sync, buf) -> done"},
    {"recv", (PyCFunction)(void (*)(void))f_recv, METH_FASTCALL, "recv(h, source, tag, buf, status) -> done"},
    {"isend", (PyCFunction)(void (*)(void))f_isend, METH_FASTCALL, "isend(h, dest, tag, sync, buf) -> Request or False"},
    {"irecv", (PyCFunction)(void (*)(void))f_irecv, METH_FASTCALL, "irecv(h, source, tag, buf, size) -> Request or False"},
    {"isend_obj", (PyCFunction)(void (*)(void))f_isend_obj, METH_FASTCALL, "isend_obj(h, dest, tag, sync, obj) -> Request or False"},
    {"irecv_obj", (PyCFunction)(void (*)(void))f_irecv_obj, METH_FASTCALL, "irecv_obj(h, source, tag, size) -> Request or False"},
    {"wait", (PyCFunction)(void (*)(void))f_wait, METH_FASTCALL, "wait(request, status) -> result"},
    {"send_obj", (PyCFunction)(void (*)(void))f_send_obj, METH_FASTCALL, "send_obj(h, dest, tag, sync, obj) -> done"},
    {"recv_obj", (PyCFunction)(void (*)(void))f_recv_obj, METH_FASTCALL, "recv_obj(h, source, tag, status) -> obj"},
    {"bcast_obj", (PyCFunction)(void (*)(void))f_bcast_obj, METH_FASTCALL, "bcast_obj(h, root, isroot, obj) -> obj"},
    {"gather_obj", (PyCFunction)(void (*)(void))f_gather_obj, METH_FASTCALL, "gather_obj(h, root, all, size, obj) -> list or None"},
    {"scatter_obj", (PyCFunction)(void (*)(void))f_scatter_obj, METH_FASTCALL, "scatter_obj(h, root, items or None) -> obj"},
    {"alltoall_obj", (PyCFunction)(void (*)(void))f_alltoall_obj, METH_FASTCALL, "alltoall_obj(h, items) -> list"},
    {"bcast", (PyCFunction)(void (*)(void))f_bcast, METH_FASTCALL, "bcast(h, root, isroot, buf) -> done"},
    {"gather", (PyCFunction)(void (*)(void))f_gather, METH_FASTCALL, "gather(h, root, me, all, size, sendbuf, recvbuf) -> done"},
    {"scatter", (PyCFunction)(void (*)(void))f_scatter, METH_FASTCALL, "scatter(h, root, isroot, size, sendbuf, recvbuf) -> done"},
    {"reduce", (PyCFunction)(void (*)(void))f_reduce, METH_FASTCALL, "reduce(h, kind, root, isroot, op, sendbuf or None, recvbuf or None) -> done"},
    {"barrier", (PyCFunction)(void (*)(void))f_barrier, METH_FASTCALL, "barrier(h) -> done"},
    {"ibarrier", (PyCFunction)(void (*)(void))f_ibarrier, METH_FASTCALL, "ibarrier(h) -> Request or False"},
    {"ibcast", (PyCFunction)(void (*)(void))f_ibcast, METH_FASTCALL, "ibcast(h, root, isroot, buf) -> Request or False"},
    {"ireduce", (PyCFunction)(void (*)(void))f_ireduce, METH_FASTCALL, "ireduce(h, kind, root, isroot, op, sendbuf or None, recvbuf or None) -> Request or False"},
    {"alltoall", (PyCFunction)(void (*)(void))f_alltoall, METH_FASTCALL, "alltoall(h, size, sendbuf, recvbuf) -> done"},
    {"igather", (PyCFunction)(void (*)(void))f_igather, METH_FASTCALL, "igather(h, root, me, all, size, sendbuf, recvbuf) -> Request or False"},
    {"iscatter", (PyCFunction)(void (*)(void))f_iscatter, METH_FASTCALL, "iscatter(h, root, isroot, size, sendbuf, recvbuf) -> Request or False"},
    {"ialltoall", (PyCFunction)(void (*)(void))f_ialltoall, METH_FASTCALL, "ialltoall(h, size, sendbuf, recvbuf) -> Request or False"},
    {"gatherv", (PyCFunction)(void (*)(void))f_gatherv, METH_FASTCALL, "gatherv(h, root, rank, all, size, sendbuf, recvspec) -> done"},
    {"scatterv", (PyCFunction)(void (*)(void))f_scatterv, METH_FASTCALL, "scatterv(h, root, rank, size, sendspec, recvbuf) -> done"},
    {"alltoallv", (PyCFunction)(void (*)(void))f_alltoallv, METH_FASTCALL, "alltoallv(h, size, sendspec, recvspec) -> done"},
    {"igatherv", (PyCFunction)(void (*)(void))f_igatherv, METH_FASTCALL, "igatherv(h, root, rank, all, size, sendbuf, recvspec) -> Request or False"},
    {"iscatterv", (PyCFunction)(void (*)(void))f_iscatterv, METH_FASTCALL, "iscatterv(h, root, rank, size, sendspec, recvbuf) -> Request or False"},
    {"ialltoallv", (PyCFunction)(void (*)(void))f_ialltoallv, METH_FASTCALL, "ialltoallv(h, size, sendspec, recvspec) -> Request or False"},
    {"bind_types", (PyCFunction)(void (*)(void))f_bind_types, METH_FASTCALL, "bind_types(Op, IN_PLACE, Request)"},
    {"bind_datatypes", (PyCFunction)(void (*)(void))f_bind_datatypes, METH_FASTCALL, "bind_datatypes(types, sizes)"},
    {"progress", f_progress, METH_O, "progress(handles): wait for all of them in one call"},
    {"waitall", (PyCFunction)(void (*)(void))f_waitall, METH_FASTCALL, "waitall(requests, statuses) -> done, or False for the general path"},
    {"waitany", (PyCFunction)(void (*)(void))f_waitany, METH_FASTCALL, "waitany(requests, status) -> index, or None for the general path"},
    {"testall", (PyCFunction)(void (*)(void))f_testall, METH_FASTCALL, "testall(requests, statuses) -> done, or None for the general path"},
    {"wait1", (PyCFunction)(void (*)(void))f_wait1, METH_FASTCALL, "wait1(request, status) -> done, or False for the general path"},
    {"wait_req", (PyCFunction)(void (*)(void))f_wait_req, METH_FASTCALL, "wait_req(request, status) -> object, or GENERAL for the general path"},
    {"test1", (PyCFunction)(void (*)(void))f_test1, METH_FASTCALL, "test1(request, status) -> completed, or None for the general path"},
    {"probe", (PyCFunction)(void (*)(void))f_probe, METH_FASTCALL, "probe(h, source, tag, status, block) -> flag, or None for the general path"},
    {"sendrecv", (PyCFunction)(void (*)(void))f_sendrecv, METH_FASTCALL, "sendrecv(h, dest, sendtag, source, recvtag, sendbuf, recvbuf, status) -> done"},
#if PY_VERSION_HEX >= 0x03090000
    {"method", f_method, METH_VARARGS, "method(fallback, target, recipe, result, cls) -> a method without a Python frame"},
    {"current_method", f_current_method, METH_NOARGS, "current_method() -> the qualified name of the method running its target on this thread, or None"},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fast",
    "pmrun.MPI's hot calls through the buffer protocol, without ctypes.", -1, methods,
};

PyMODINIT_FUNC PyInit__fast(void)
{
    if (pthread_key_create(&scratch_key, free) != 0)
        return PyErr_NoMemory();
    struct {
        PyObject **s;
        const char *text;
    } names[] = {
        {&s_source, "source"}, {&s_tag, "tag"},   {&s_count, "_count"}, {&s_error, "error"},
        {&s_user, "_user"},    {&s_code, "code"}, {&s_h, "_h"},         {&s_hh, "h"},
        {&s_kind, "_kind"},    {&s_done, "_done"}, {&s_keep, "_keep"},  {&s_status, "_status"}, {&s_obj, "_obj"},
        {&k_send, "send"},     {&k_buf, "buf"},   {&k_coll, "coll"},    {&k_obj, "obj"},
        {&s_size, "size"},     {&s_blocks, "blocks"},
#if PY_VERSION_HEX >= 0x03090000
        {&s_rank, "_rank"},    {&s_size_attr, "_size"},
#endif
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].s = PyUnicode_InternFromString(names[i].text)) == NULL)
            return NULL;
    empty = PyTuple_New(0);
    zero = PyLong_FromLong(0);
    general = PyObject_CallObject((PyObject *)&PyBaseObject_Type, NULL);
    if (empty == NULL || zero == NULL || general == NULL)
        return NULL;
    if (PyType_Ready(&HeldType) < 0 || PyType_Ready(&MemoryType) < 0)
        return NULL;
#if PY_VERSION_HEX >= 0x03090000
    FastClassMethodType = FastMethodType;
    FastClassMethodType.tp_name = "pmrun._fast.classmethod";
    FastClassMethodType.tp_flags &= ~Py_TPFLAGS_METHOD_DESCRIPTOR;
    if (PyType_Ready(&FastMethodType) < 0 || PyType_Ready(&FastClassMethodType) < 0)
        return NULL;
#endif
    if ((orphans = PyList_New(0)) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&HeldType);
    if (PyModule_AddObject(m, "Held", (PyObject *)&HeldType) < 0) {
        Py_DECREF(&HeldType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObject(m, "orphans", Py_NewRef(orphans)) < 0) {
        Py_DECREF(orphans);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&MemoryType);
    if (PyModule_AddObject(m, "memory", (PyObject *)&MemoryType) < 0) {
        Py_DECREF(&MemoryType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObject(m, "GENERAL", Py_NewRef(general)) < 0) {
        Py_DECREF(general);
        Py_DECREF(m);
        return NULL;
    }
#if PY_VERSION_HEX >= 0x03090000
    static const struct {
        const char *name;
        int value;
    } consts[] = {
        {"ARG_PARAM", ARG_PARAM}, {"ARG_SELF", ARG_SELF},     {"ARG_H", ARG_H},           {"ARG_SIZE", ARG_SIZE},
        {"ARG_RANK_IS", ARG_RANK_IS}, {"ARG_CONST", ARG_CONST}, {"NEED_NONE", NEED_NONE}, {"NEED_SOME", NEED_SOME},
        {"NEED_FALSE", NEED_FALSE}, {"NEED_NOT", NEED_NOT},   {"NEED_H", NEED_H},         {"NEED_LIST", NEED_LIST}, {"RES_DONE", RES_DONE},
        {"RES_TRUE", RES_TRUE},   {"RES_VALUE", RES_VALUE},   {"RES_GENERAL", RES_GENERAL},
        {"RES_ANY", RES_ANY},
    };
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++)
        if (PyModule_AddIntConstant(m, consts[i].name, consts[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
#endif
    return m;
}
