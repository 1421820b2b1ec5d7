"""Attribute caching on communicators, datatypes and windows (MPI's
Create_keyval, Set_attr, Get_attr, Delete_attr, Free_keyval), with the
callbacks of the keyval: copy_fn(obj, keyval, value) when the object is
duplicated (None or False: the duplicate has no such attribute; True: it
has the same value; a callable: the value it returns, or none for
NotImplemented), delete_fn(obj, keyval, value) when the attribute is
deleted, replaced, or its object freed.

Part of pmrun.MPI.
"""

from ._mpi_constants import ERR_KEYVAL, KEYVAL_INVALID, Exception, _user_call

# keyval -> (copy_fn, delete_fn). A freed keyval keeps its callbacks for
# the attributes still set with it, as MPI says.
_callbacks = {}
_next = [1 << 10]  # below: the predefined keyvals


def create_keyval(copy_fn=None, delete_fn=None):
    if delete_fn is not None and not callable(delete_fn):
        raise TypeError("delete_fn must be callable or None")
    if copy_fn not in (None, True, False) and not callable(copy_fn):
        raise TypeError("copy_fn must be callable, True, False or None")
    keyval = _next[0]
    _next[0] += 1
    _callbacks[keyval] = (copy_fn, delete_fn)
    return keyval


def free_keyval(keyval):
    check(keyval)
    return KEYVAL_INVALID


def check(keyval):
    if keyval == KEYVAL_INVALID:
        raise Exception(ERR_KEYVAL, "invalid key value (MPI.KEYVAL_INVALID)")


def set_attr(obj, attrs, keyval, value):
    """Sets obj's attribute (in its attrs dict), deleting the one it
    replaces first."""
    check(keyval)
    delete_attr(obj, attrs, keyval)
    attrs[keyval] = value


def delete_attr(obj, attrs, keyval):
    check(keyval)
    if keyval not in attrs:
        return
    value = attrs.pop(keyval)
    delete_fn = _callbacks.get(keyval, (None, None))[1]
    if delete_fn is not None:
        _user_call(delete_fn, obj, keyval, value)


def copied(obj, attrs):
    """The attributes that a duplicate of obj gets."""
    out = {}
    for keyval, value in list(attrs.items()):
        copy_fn = _callbacks.get(keyval, (None, None))[0]
        if copy_fn is None or copy_fn is False:
            continue
        if copy_fn is True:
            out[keyval] = value
            continue
        new = _user_call(copy_fn, obj, keyval, value)
        if new is not NotImplemented:
            out[keyval] = new
    return out


def free_attrs(obj, attrs):
    """Deletes every attribute of obj, which is being freed."""
    for keyval in list(attrs):
        delete_attr(obj, attrs, keyval)


class Keyvals:
    """Create_keyval and Free_keyval, of the classes whose objects carry
    attributes (Comm, Datatype, Win)."""

    @staticmethod
    def Create_keyval(copy_fn=None, delete_fn=None, nopython=False):
        return create_keyval(copy_fn, delete_fn)

    @staticmethod
    def Free_keyval(keyval):
        return free_keyval(keyval)
