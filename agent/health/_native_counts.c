/* Health's C module, its counting half: FeatureCounts.add and LatencyHistogram.add
 * for a batch at once (exported by agent/health/_native.c, which says what the
 * module guarantees: the Python functions are the specification, and a value
 * this code does not handle itself goes back to them).
 */
#include "_native.h"

#include <math.h>
#include <string.h>

/* ---- counting ------------------------------------------------------------------------------ */

/* What one call counted besides the bins (FeatureCounts' quality counters). */
typedef struct {
    Py_ssize_t missing, out_of_range, unseen;
    PyObject *rest;  /* values FeatureCounts.add must count (other types), or NULL */
} Tally;

typedef struct {
    double *edges;
    Py_ssize_t n_edges;
    double minimum, maximum;
    PyObject *lookup;  /* categorical: category -> bin index; NULL for numeric bins */
    Py_ssize_t *counts;
    Py_ssize_t n_counts;
} Bins;

static int defer(Tally *tally, PyObject *value) {
    if (tally->rest == NULL && (tally->rest = PyList_New(0)) == NULL) return -1;
    return PyList_Append(tally->rest, value);
}

/* FeatureCounts.add(value) for the values it handles without Python; others are deferred. */
static int count_one(Bins *bins, Tally *tally, PyObject *value) {
    if (bins->lookup == NULL) {
        double v;
        if (PyFloat_CheckExact(value)) {
            v = PyFloat_AS_DOUBLE(value);
            if (v != v) { tally->missing++; return 0; }
        } else if (PyLong_CheckExact(value)) {
            v = PyLong_AsDouble(value);
            if (v == -1.0 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
                PyErr_Clear();
                int positive = health_nonnegative(value);
                if (positive < 0) return -1;
                v = positive ? INFINITY : -INFINITY;
            }
        } else if (value == Py_None) {
            tally->missing++;
            return 0;
        } else {
            return defer(tally, value);
        }
        /* bisect_left(edges, v) */
        Py_ssize_t lo = 0, hi = bins->n_edges;
        while (lo < hi) {
            Py_ssize_t mid = (lo + hi) / 2;
            if (bins->edges[mid] < v) lo = mid + 1;
            else hi = mid;
        }
        bins->counts[lo]++;
        if (v < bins->minimum || v > bins->maximum) tally->out_of_range++;
        return 0;
    }
    if (!PyUnicode_CheckExact(value)) return defer(tally, value);
    PyObject *index = PyDict_GetItemWithError(bins->lookup, value);
    if (index == NULL) {
        if (PyErr_Occurred()) return -1;
        bins->counts[bins->n_counts - 1]++;
        tally->unseen++;
        return 0;
    }
    Py_ssize_t i = PyLong_AsSsize_t(index);
    if (i == -1 && PyErr_Occurred()) return -1;
    if (i < 0 || i >= bins->n_counts) {
        PyErr_SetString(PyExc_ValueError, "a category's bin index is outside its counts");
        return -1;
    }
    bins->counts[i]++;
    return 0;
}

/* The bins of a FeatureCounts, read from its slots: (edges, minimum, maximum, lookup, counts). */
static int bins_open(Bins *bins, PyObject *edges, double minimum, double maximum, PyObject *lookup,
                     PyObject *counts) {
    memset(bins, 0, sizeof(*bins));
    if (!PyList_CheckExact(counts) || PyList_GET_SIZE(counts) == 0) {
        PyErr_SetString(PyExc_TypeError, "counts must be a non-empty list");
        return -1;
    }
    bins->n_counts = PyList_GET_SIZE(counts);
    bins->counts = PyMem_Calloc((size_t)bins->n_counts, sizeof(Py_ssize_t));
    if (bins->counts == NULL) { PyErr_NoMemory(); return -1; }
    bins->minimum = minimum;
    bins->maximum = maximum;
    if (lookup != Py_None) {
        if (!PyDict_Check(lookup)) { PyErr_SetString(PyExc_TypeError, "lookup must be a dict"); return -1; }
        bins->lookup = lookup;
        return 0;
    }
    PyObject *seq = PySequence_Fast(edges, "edges must be a sequence");
    if (seq == NULL) return -1;
    bins->n_edges = PySequence_Fast_GET_SIZE(seq);
    if (bins->n_edges >= bins->n_counts) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "numeric bins need one count more than edges");
        return -1;
    }
    bins->edges = PyMem_Malloc(sizeof(double) * (size_t)(bins->n_edges ? bins->n_edges : 1));
    if (bins->edges == NULL) { Py_DECREF(seq); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < bins->n_edges; i++) {
        bins->edges[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (bins->edges[i] == -1.0 && PyErr_Occurred()) { Py_DECREF(seq); return -1; }
    }
    Py_DECREF(seq);
    return 0;
}

/* Adds the C counts into the Python list; frees the bins. */
static int bins_close(Bins *bins, PyObject *counts, int ok) {
    for (Py_ssize_t i = 0; ok && i < bins->n_counts; i++) {
        if (bins->counts[i] == 0) continue;
        PyObject *old = PyList_GET_ITEM(counts, i);
        PyObject *add = PyLong_FromSsize_t(bins->counts[i]);
        PyObject *sum = add == NULL ? NULL : PyNumber_Add(old, add);
        Py_XDECREF(add);
        if (sum == NULL) { ok = 0; break; }
        PyList_SET_ITEM(counts, i, sum);
        Py_DECREF(old);
    }
    PyMem_Free(bins->edges);
    PyMem_Free(bins->counts);
    return ok ? 0 : -1;
}

/* The tally as (missing, out_of_range, unseen, rest): rest is the list of deferred values. */
static PyObject *tally_result(Tally *tally) {
    PyObject *rest = tally->rest ? tally->rest : PyList_New(0);
    if (rest == NULL) return NULL;
    tally->rest = NULL;
    return Py_BuildValue("nnnN", tally->missing, tally->out_of_range, tally->unseen, rest);
}

/* count_values(values, edges, minimum, maximum, lookup, counts) -> (missing, out_of_range, unseen, rest).
 * The bins of ``counts`` (a list, updated in place) get what FeatureCounts.add
 * of each value would give them; the values of other types come back in
 * ``rest``, for FeatureCounts.add itself. */
PyObject *health_count_values(PyObject *module, PyObject *args) {
    PyObject *values, *edges, *lookup, *counts;
    double minimum, maximum;
    if (!PyArg_ParseTuple(args, "OOddOO", &values, &edges, &minimum, &maximum, &lookup, &counts)) return NULL;
    PyObject *seq = PySequence_Fast(values, "values must be a sequence");
    if (seq == NULL) return NULL;
    Bins bins;
    Tally tally = {0, 0, 0, NULL};
    int ok = bins_open(&bins, edges, minimum, maximum, lookup, counts) == 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; ok && i < n; i++)
        ok = count_one(&bins, &tally, PySequence_Fast_GET_ITEM(seq, i)) == 0;
    Py_DECREF(seq);
    ok = bins_close(&bins, counts, ok) == 0 && ok;
    if (!ok) { Py_XDECREF(tally.rest); return NULL; }
    return tally_result(&tally);
}

/* count_feature(dicts, name, edges, minimum, maximum, lookup, counts) -> as count_values, over
 * ``(d or {}).get(name)`` of each feature dict ``d`` (None: no features: the value is missing). */
PyObject *health_count_feature(PyObject *module, PyObject *args) {
    PyObject *dicts, *name, *edges, *lookup, *counts;
    double minimum, maximum;
    if (!PyArg_ParseTuple(args, "O!OOddOO", &PyList_Type, &dicts, &name, &edges, &minimum, &maximum, &lookup,
                          &counts))
        return NULL;
    Bins bins;
    Tally tally = {0, 0, 0, NULL};
    int ok = bins_open(&bins, edges, minimum, maximum, lookup, counts) == 0;
    Py_ssize_t n = PyList_GET_SIZE(dicts);
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *d = PyList_GET_ITEM(dicts, i), *value;
        if (d == Py_None) {
            value = Py_None;
        } else if (PyDict_CheckExact(d)) {
            value = PyDict_GetItemWithError(d, name);
            if (value == NULL) {
                if (PyErr_Occurred()) { ok = 0; break; }
                value = Py_None;
            }
        } else {  /* ``(d or {}).get(name)``, as Python does it, for anything else */
            int truth = PyObject_IsTrue(d);
            if (truth < 0) { ok = 0; break; }
            if (!truth) {
                value = Py_None;
            } else {
                PyObject *owned = PyObject_CallMethod(d, "get", "O", name);
                if (owned == NULL) { ok = 0; break; }
                ok = count_one(&bins, &tally, owned) == 0;
                Py_DECREF(owned);
                continue;
            }
        }
        ok = count_one(&bins, &tally, value) == 0;
    }
    ok = bins_close(&bins, counts, ok) == 0 && ok;
    if (!ok) { Py_XDECREF(tally.rest); return NULL; }
    return tally_result(&tally);
}

/* ---- latency histogram ----------------------------------------------------------------------- */

/* add_latencies(values, buckets, zero, count, total, min, max, min_value, max_value, log_gamma,
 *               min_index, max_index) -> (zero, count, total, min, max, refused), or None.
 * LatencyHistogram.add of each value in turn, for a batch of floats (None: no
 * latency logged, skipped): ``buckets`` (index -> count) is updated in place,
 * the other figures are returned. The sum is taken in the same order as
 * Python's, so it is the same float. None (nothing changed): a value, or the
 * minimum or maximum so far, is not a float; Python counts the batch. */
PyObject *health_add_latencies(PyObject *module, PyObject *args) {
    PyObject *values, *buckets, *min_obj, *max_obj;
    Py_ssize_t zero, count;
    double total, min_value, max_value, log_gamma;
    long min_index, max_index;
    if (!PyArg_ParseTuple(args, "O!O!nndOOdddll", &PyList_Type, &values, &PyDict_Type, &buckets, &zero, &count,
                          &total, &min_obj, &max_obj, &min_value, &max_value, &log_gamma, &min_index, &max_index))
        return NULL;
    if (max_index < min_index || max_index - min_index > 100000) {
        PyErr_SetString(PyExc_ValueError, "bucket indexes out of order");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        if (v != Py_None && !PyFloat_CheckExact(v)) Py_RETURN_NONE;
    }
    if (count > 0 && !(PyFloat_CheckExact(min_obj) && PyFloat_CheckExact(max_obj))) Py_RETURN_NONE;
    double low = count > 0 ? PyFloat_AS_DOUBLE(min_obj) : 0.0, high = count > 0 ? PyFloat_AS_DOUBLE(max_obj) : 0.0;
    Py_ssize_t width = (Py_ssize_t)(max_index - min_index) + 1, refused = 0;
    Py_ssize_t *added = PyMem_Calloc((size_t)width, sizeof(Py_ssize_t));
    if (added == NULL) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        if (v == Py_None) continue;
        double value = PyFloat_AS_DOUBLE(v);
        if (!(value >= 0.0 && value < INFINITY)) { refused++; continue; }  /* also NaN */
        if (value < min_value) {
            zero++;
        } else {
            long index = value > max_value ? max_index : (long)ceil(log(value) / log_gamma);
            if (index < min_index) index = min_index;
            if (index > max_index) index = max_index;  /* (cannot happen: value <= max_value) */
            added[index - min_index]++;
        }
        count++;
        total += value <= max_value ? value : max_value;
        if (count == 1) low = high = value;
        else if (value < low) low = value;
        else if (value > high) high = value;
    }
    int ok = 1;
    for (Py_ssize_t i = 0; ok && i < width; i++) {
        if (added[i] == 0) continue;
        PyObject *index = PyLong_FromLong(min_index + (long)i), *old, *sum = NULL;
        if (index == NULL) { ok = 0; break; }
        old = PyDict_GetItemWithError(buckets, index);
        if (old == NULL && PyErr_Occurred()) { Py_DECREF(index); ok = 0; break; }
        PyObject *add = PyLong_FromSsize_t(added[i]);
        if (add != NULL) sum = old == NULL ? (Py_INCREF(add), add) : PyNumber_Add(old, add);
        Py_XDECREF(add);
        ok = sum != NULL && PyDict_SetItem(buckets, index, sum) == 0;
        Py_XDECREF(sum);
        Py_DECREF(index);
    }
    PyMem_Free(added);
    if (!ok) return NULL;
    if (count == 0) return Py_BuildValue("nndOOn", zero, count, total, Py_None, Py_None, refused);
    return Py_BuildValue("nndddn", zero, count, total, low, high, refused);
}
