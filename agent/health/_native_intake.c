/* Health's intake in C: what HealthEngine.observe does to a batch before its
 * state changes (agent/health/intake.py, whose functions are the specification).
 *
 *   select(events, heads, extractors, make_extractor)   intake.select_python
 *   cover(covered, pinned, found, found_obs)            intake.cover_python
 *   journal_body(events)                                intake.journal_body_python
 *
 * Each returns None, having changed nothing, when an argument is not of the
 * exact types it handles (an object that is not an exact Event, a source key
 * that is not a str, a document that is not bytes, an offset that is not an
 * int within 64 bits, a covered entry that is not a set...): the Python
 * function then runs. Every type is checked in a first pass, before anything
 * is called or changed, so that a batch is never half done by C and then
 * done again by Python. Exceptions of the calls it makes (an extractor, the
 * decoder other than its JSONDecodeError) propagate as they do in Python.
 */
#include "_native.h"  /* (first: it includes Python.h) */

#include <stdio.h>
#include <string.h>

/* Set by configure_intake(). */
static PyObject *EventType;    /* agent.events.Event */
static PyObject *py_loads;     /* orjson.loads */
static PyObject *decode_error; /* orjson.JSONDecodeError */

/* Event fields, by their NamedTuple index. */
#define EV_KEY 0
#define EV_OFFSET 1
#define EV_DATA 4

/* An exact Event whose key is a str and data bytes (offset too, with ``offset``). */
static int plain_event(PyObject *event, int offset) {
    if ((PyObject *)Py_TYPE(event) != EventType || PyTuple_GET_SIZE(event) <= EV_DATA) return 0;
    if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(event, EV_KEY))) return 0;
    if (!PyBytes_CheckExact(PyTuple_GET_ITEM(event, EV_DATA))) return 0;
    return !offset || PyLong_CheckExact(PyTuple_GET_ITEM(event, EV_OFFSET));
}

static int plain_events(PyObject *events, int offset) {
    Py_ssize_t n = PyList_GET_SIZE(events);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!plain_event(PyList_GET_ITEM(events, i), offset)) return 0;
    return 1;
}

/* Does ``data`` hold one of ``heads`` (``head in data`` for each, bytes in bytes)? */
static int any_head(PyObject *data, PyObject *heads) {
    const char *text = PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    for (Py_ssize_t h = 0; h < PyTuple_GET_SIZE(heads); h++) {
        PyObject *head = PyTuple_GET_ITEM(heads, h);
        Py_ssize_t length = PyBytes_GET_SIZE(head);
        if (length == 0 || (length <= size && memmem(text, (size_t)size, PyBytes_AS_STRING(head),
                                                     (size_t)length) != NULL))
            return 1;
    }
    return 0;
}

PyObject *health_select(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *events, *heads, *extractors, *make_extractor;
    if (!PyArg_ParseTuple(args, "OOOO", &events, &heads, &extractors, &make_extractor)) return NULL;
    if (EventType == NULL || !PyList_CheckExact(events) || !PyTuple_CheckExact(heads) ||
        !PyDict_CheckExact(extractors) || !plain_events(events, 0))
        Py_RETURN_NONE;
    for (Py_ssize_t h = 0; h < PyTuple_GET_SIZE(heads); h++)
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(heads, h))) Py_RETURN_NONE;
    PyObject *found = PyList_New(0), *found_obs = PyList_New(0), *doc = NULL, *obs = NULL;
    if (found == NULL || found_obs == NULL) goto error;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(events); i++) {
        PyObject *event = PyList_GET_ITEM(events, i);
        PyObject *data = PyTuple_GET_ITEM(event, EV_DATA), *key = PyTuple_GET_ITEM(event, EV_KEY);
        if (!any_head(data, heads)) continue;
        doc = PyObject_CallOneArg(py_loads, data);
        if (doc == NULL) {
            if (!PyErr_ExceptionMatches(decode_error)) goto error;
            PyErr_Clear();
            continue;
        }
        /* ``extractors.get(key) or make_extractor(key, doc)``, then called with doc. */
        PyObject *extract = PyDict_GetItemWithError(extractors, key);
        if (extract == NULL && PyErr_Occurred()) goto error;
        int truthy = extract == NULL ? 0 : PyObject_IsTrue(extract);
        if (truthy < 0) goto error;
        if (truthy) {
            Py_INCREF(extract);
        } else if ((extract = PyObject_CallFunctionObjArgs(make_extractor, key, doc, NULL)) == NULL) {
            goto error;
        }
        obs = PyObject_CallOneArg(extract, doc);
        Py_DECREF(extract);
        Py_CLEAR(doc);
        if (obs == NULL) goto error;
        if (obs != Py_None && (PyList_Append(found, event) < 0 || PyList_Append(found_obs, obs) < 0)) goto error;
        Py_CLEAR(obs);
    }
    PyObject *result = PyTuple_Pack(2, found, found_obs);
    Py_DECREF(found);
    Py_DECREF(found_obs);
    return result;
error:
    Py_XDECREF(found);
    Py_XDECREF(found_obs);
    Py_XDECREF(doc);
    Py_XDECREF(obs);
    return NULL;
}

PyObject *health_cover(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *covered, *pinned, *found, *found_obs;
    if (!PyArg_ParseTuple(args, "OOOO", &covered, &pinned, &found, &found_obs)) return NULL;
    if (EventType == NULL || !PyDict_CheckExact(covered) || !PyDict_CheckExact(pinned) ||
        !PyList_CheckExact(found) || !PyList_CheckExact(found_obs) || !plain_events(found, 1))
        Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(found);
    if (PyList_GET_SIZE(found_obs) < n) n = PyList_GET_SIZE(found_obs);  /* zip stops at the shorter */
    /* First pass, nothing changed: what the dictionaries hold must be what this code makes. */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyTuple_GET_ITEM(PyList_GET_ITEM(found, i), EV_KEY);
        PyObject *offsets = PyDict_GetItemWithError(covered, key);
        if (offsets == NULL && PyErr_Occurred()) return NULL;
        if (offsets != NULL && (offsets == Py_None || !PySet_CheckExact(offsets))) Py_RETURN_NONE;
        PyObject *pins = PyDict_GetItemWithError(pinned, key);
        if (pins == NULL && PyErr_Occurred()) return NULL;
        if (pins != NULL && (pins == Py_None || !PyDict_CheckExact(pins))) Py_RETURN_NONE;
    }
    PyObject *fresh = PyList_New(0), *fresh_obs = PyList_New(0);
    if (fresh == NULL || fresh_obs == NULL) goto error;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *event = PyList_GET_ITEM(found, i);
        PyObject *key = PyTuple_GET_ITEM(event, EV_KEY), *offset = PyTuple_GET_ITEM(event, EV_OFFSET);
        PyObject *offsets = PyDict_GetItemWithError(covered, key);  /* borrowed */
        if (offsets == NULL) {
            if (PyErr_Occurred() || (offsets = PySet_New(NULL)) == NULL) goto error;
            int stored = PyDict_SetItem(covered, key, offsets);
            Py_DECREF(offsets);  /* the dict holds it */
            if (stored < 0) goto error;
        } else {
            int seen = PySet_Contains(offsets, offset);
            if (seen < 0) goto error;
            if (seen) {  /* fed before: pinned, in flight again */
                PyObject *pins = PyDict_GetItemWithError(pinned, key);
                if (pins == NULL) {
                    if (PyErr_Occurred() || (pins = PyDict_New()) == NULL) goto error;
                    int stored = PyDict_SetItem(pinned, key, pins);
                    Py_DECREF(pins);
                    if (stored < 0) goto error;
                }
                if (PyDict_SetItem(pins, offset, Py_None) < 0) goto error;
                continue;
            }
        }
        if (PySet_Add(offsets, offset) < 0 || PyList_Append(fresh, event) < 0 ||
            PyList_Append(fresh_obs, PyList_GET_ITEM(found_obs, i)) < 0)
            goto error;
    }
    PyObject *result = PyTuple_Pack(2, fresh, fresh_obs);
    Py_DECREF(fresh);
    Py_DECREF(fresh_obs);
    return result;
error:
    Py_XDECREF(fresh);
    Py_XDECREF(fresh_obs);
    return NULL;
}

PyObject *health_journal_body(PyObject *module, PyObject *events) {
    (void)module;
    if (EventType == NULL || !PyList_CheckExact(events) || !plain_events(events, 1)) Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(events), total = 0;
    /* First pass: every key encodable, every offset within 64 bits, and the size. */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *event = PyList_GET_ITEM(events, i);
        Py_ssize_t key_size;
        if (PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(event, EV_KEY), &key_size) == NULL) {
            PyErr_Clear();  /* (a lone surrogate: Python's encode() raises its own error) */
            Py_RETURN_NONE;
        }
        int overflow;
        PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(event, EV_OFFSET), &overflow);
        if (overflow) Py_RETURN_NONE;
        total += key_size + 1 + 21 + PyBytes_GET_SIZE(PyTuple_GET_ITEM(event, EV_DATA)) + 1;
    }
    PyObject *body = PyBytes_FromStringAndSize(NULL, total);
    if (body == NULL) return NULL;
    char *out = PyBytes_AS_STRING(body);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *event = PyList_GET_ITEM(events, i), *data = PyTuple_GET_ITEM(event, EV_DATA);
        Py_ssize_t key_size;
        const char *key = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(event, EV_KEY), &key_size);
        memcpy(out, key, (size_t)key_size);
        out += key_size;
        *out++ = '\t';
        int overflow;
        out += snprintf(out, 22, "%lld", PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(event, EV_OFFSET),
                                                                      &overflow));
        *out++ = '\t';
        memcpy(out, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data));
        out += PyBytes_GET_SIZE(data);
        *out++ = '\n';
    }
    if (_PyBytes_Resize(&body, out - PyBytes_AS_STRING(body)) < 0) return NULL;
    return body;
}

PyObject *health_configure_intake(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *event, *loads, *error;
    if (!PyArg_ParseTuple(args, "OOO", &event, &loads, &error)) return NULL;
    if (!PyType_Check(event) || !PyType_IsSubtype((PyTypeObject *)event, &PyTuple_Type) ||
        !PyType_Check(error) || !PyType_IsSubtype((PyTypeObject *)error, (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "configure_intake(Event type, loads, decode error type)");
        return NULL;
    }
    Py_INCREF(event);
    Py_XSETREF(EventType, event);
    Py_INCREF(loads);
    Py_XSETREF(py_loads, loads);
    Py_INCREF(error);
    Py_XSETREF(decode_error, error);
    Py_RETURN_NONE;
}
