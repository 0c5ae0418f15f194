/* The native hot path of model health: extraction, feature counting and the intake in C.
 *
 * What it is for: health's cost per event (issue 10). Two pure functions of
 * the Python engine run once per event or per feature value; this module does
 * the same work without Python bytecode:
 *
 *   extract_default(doc)      agent.health.extract._extract_default
 *   count_values(...)         FeatureCounts.add of each value in turn
 *   count_feature(...)        the same over one feature of many feature dicts
 *   add_latencies(...)        LatencyHistogram.add of each latency of a batch
 *   select, cover, journal_body   agent.health.intake (in _native_intake.c)
 *
 * What it guarantees: the Python functions are the specification. Every value
 * this module does not handle itself (a type other than the exact JSON types,
 * an int beyond 64 bits, a timestamp not in the agent's own shape, a string
 * that is not ASCII where case matters) is handed to the Python helpers that
 * configure() received, so the results are the same for every input, not only
 * for the usual ones. tests/health/test_native.py holds both implementations
 * equal on generated documents and values. Nothing here keeps state between
 * calls except the helpers and interned keys set by configure().
 *
 * Built by setup.py as an optional extension, with _native_counts.c (the
 * counting functions) and _native_intake.c: without a C compiler the agent runs the Python
 * functions (agent/health/native.py decides).
 */
#include "_native.h"  /* (first: it includes Python.h) */

#include <math.h>
#include <string.h>
#include <strings.h>

/* Set by configure(). */
static PyObject *Observation;   /* the NamedTuple type */
static PyObject *py_fallback;   /* extract(doc, default paths), for a doc that is not a plain dict */
static PyObject *py_time;       /* _time(doc) */
static PyObject *py_scalar;     /* _scalar(value) */
static PyObject *py_name;       /* _name(value) */
static PyObject *py_millis;     /* _milliseconds(value, scale) */
static PyObject *not_requests;  /* frozenset of model.operation values of probes */
static double default_scale;
static int zulu_ok;             /* datetime.fromisoformat takes a trailing Z (Python >= 3.11) */

static PyObject *K_event, *K_kind, *K_duration, *K_model, *K_operation, *K_name, *K_monitor, *K_target,
    *K_request_id, *K_version, *K_prediction, *K_input, *K_features, *K_gen_ai, *K_request, *K_extra,
    *K_label, *K_timestamp, *K_service, *K_host, *K_usage, *K_http, *K_response, *K_status_code,
    *K_outcome, *K_log, *K_level, *K_value, *K_input_tokens, *K_output_tokens, *K_tags, *S_event, *S_failure,
    *S_empty, *S_timestamp_unusable, *I_500, *I_0, *error_levels;

/* ``value >= 0`` for an int: 1, 0, or -1 (error). */
int health_nonnegative(PyObject *value) {
    return PyObject_RichCompareBool(value, I_0, Py_GE);
}

#define LATEST 253402300799.0  /* 9999-12-31T23:59:59Z: the latest event time health takes */
#define BAD_LATENCY (-1.0)

/* dict.get(key) on an exact dict, borrowed; NULL with no error set when absent. */
static inline PyObject *get(PyObject *dict, PyObject *key) {
    return PyDict_GetItemWithError(dict, key);
}

/* ``node.get(key) if node.__class__ is dict else None`` (borrowed, never NULL unless an error is set). */
static inline PyObject *step(PyObject *node, PyObject *key) {
    if (node == NULL || !PyDict_CheckExact(node)) return Py_None;
    PyObject *value = get(node, key);
    if (value == NULL) return PyErr_Occurred() ? NULL : Py_None;
    return value;
}

#define STEP(var, node, key) do { var = step(node, key); if (var == NULL) goto error; } while (0)

/* _scalar(value): plain values are themselves; objects and lists go to Python. New reference. */
static PyObject *scalar(PyObject *value) {
    if (PyDict_Check(value) || PyList_Check(value)) return PyObject_CallOneArg(py_scalar, value);
    Py_INCREF(value);
    return value;
}

/* _name(value): a str as is, None as "", anything else through Python. New reference. */
static PyObject *name_of(PyObject *value) {
    if (PyUnicode_CheckExact(value)) { Py_INCREF(value); return value; }
    if (value == Py_None) { Py_INCREF(S_empty); return S_empty; }
    return PyObject_CallOneArg(py_name, value);
}

static int digits(const char *s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static long long days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - (int)(era * 400);
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The agent's own @timestamp shape, YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z, as
 * datetime.fromisoformat(text).timestamp() gives it. 1: *when set; 0: not
 * that shape (Python decides); the result is exact: the microseconds since
 * the epoch are an integer below 2**53, and one IEEE division by 10**6 rounds
 * it as Python's int / int does. */
static int iso_zulu(PyObject *text, double *when) {
    if (!zulu_ok || !PyUnicode_IS_ASCII(text)) return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const char *s = (const char *)PyUnicode_DATA(text);
    if ((n != 20 && n != 24 && n != 27) || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[n - 1] != 'Z')
        return 0;
    int year = digits(s, 4), month = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), minute = digits(s + 14, 2), second = digits(s + 17, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 ||
        minute > 59 || second < 0 || second > 59)
        return 0;
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > month_days[month - 1] + (month == 2 && leap)) return 0;
    long long micros = 0;
    if (n > 20) {
        if (s[19] != '.') return 0;
        int width = (int)n - 21;
        int fraction = digits(s + 20, width);
        if (fraction < 0) return 0;
        micros = width == 3 ? fraction * 1000LL : fraction;
    }
    long long seconds = days_from_civil(year, month, day) * 86400LL + hour * 3600 + minute * 60 + second;
    if (seconds < 0 || seconds > 9007199254LL) return 0;  /* micros must stay below 2**53 */
    *when = (double)(seconds * 1000000LL + micros) / 1e6;
    return 1;
}

/* _time(doc): the event time, or -1 (no usable time). -2: an error is set. */
static double event_time(PyObject *doc) {
    PyObject *stamp = get(doc, K_timestamp);
    if (stamp == NULL && PyErr_Occurred()) return -2;
    double when;
    if (stamp != NULL && PyFloat_CheckExact(stamp)) {
        when = PyFloat_AS_DOUBLE(stamp);
    } else if (stamp != NULL && PyLong_CheckExact(stamp)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(stamp, &overflow);
        if (overflow) return NAN;  /* beyond 64 bits: far outside 1970..9999, a bad time */
        if (v == -1 && PyErr_Occurred()) return -2;
        when = (double)v;  /* exact within 1970..9999, and the range is checked below */
    } else if (stamp != NULL && PyUnicode_CheckExact(stamp) && iso_zulu(stamp, &when)) {
        ;
    } else if (stamp == NULL || stamp == Py_None) {
        return -1;
    } else {
        PyObject *result = PyObject_CallOneArg(py_time, doc);
        if (result == NULL) return -2;
        if (result == Py_None) { Py_DECREF(result); return -1; }
        when = PyFloat_AsDouble(result);
        Py_DECREF(result);
        if (when == -1.0 && PyErr_Occurred()) return -2;
        return when;
    }
    return (when >= 0.0 && when <= LATEST) ? when : NAN;  /* NaN: a bad time (_time's _BAD_TIME) */
}

/* _milliseconds(duration, default scale): a new float, or NULL with an error. */
static PyObject *latency_of(PyObject *duration) {
    double value;
    if (PyFloat_CheckExact(duration)) {
        value = PyFloat_AS_DOUBLE(duration);
    } else if (PyLong_CheckExact(duration)) {
        value = PyLong_AsDouble(duration);
        if (value == -1.0 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return NULL;
            PyErr_Clear();  /* an int beyond float range */
            return PyFloat_FromDouble(BAD_LATENCY);
        }
    } else {
        PyObject *scale = PyFloat_FromDouble(default_scale);
        if (scale == NULL) return NULL;
        PyObject *result = PyObject_CallFunctionObjArgs(py_millis, duration, scale, NULL);
        Py_DECREF(scale);
        return result;
    }
    double ms = value * default_scale;
    return PyFloat_FromDouble(isfinite(ms) && ms >= 0 ? ms : BAD_LATENCY);
}

/* ``isinstance(level, str) and level.lower() in ("error", "critical", "fatal")``: 1, 0 or -1 (error). */
static int error_level(PyObject *level) {
    if (!PyUnicode_Check(level)) return 0;
    PyObject *lower;
    if (PyUnicode_CheckExact(level) && PyUnicode_IS_ASCII(level)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(level);
        if (n != 5 && n != 8) return 0;
        const char *s = (const char *)PyUnicode_DATA(level);
        return (n == 5 && (strncasecmp(s, "error", 5) == 0 || strncasecmp(s, "fatal", 5) == 0)) ||
               (n == 8 && strncasecmp(s, "critical", 8) == 0);
    }
    /* str.lower() of a non-ASCII string may still give ASCII (the Kelvin sign), and a str
     * subclass may have its own lower(): Python decides, as extraction writes it. */
    lower = PyObject_CallMethod(level, "lower", NULL);
    if (lower == NULL) return -1;
    int found = PySequence_Contains(error_levels, lower);
    Py_DECREF(lower);
    return found;
}

/* _count(usage.get(key)) for a dict ``usage``: a non-negative int (not a bool) as is, else None. New reference. */
static PyObject *token_count(PyObject *usage, PyObject *key) {
    PyObject *value;
    if (PyDict_CheckExact(usage)) {
        value = get(usage, key);
        if (value == NULL) {
            if (PyErr_Occurred()) return NULL;
            Py_RETURN_NONE;
        }
        Py_INCREF(value);
    } else if ((value = PyObject_CallMethod(usage, "get", "O", key)) == NULL) {
        return NULL;
    }
    int ok = PyLong_Check(value) && !PyBool_Check(value) ? health_nonnegative(value) : 0;
    if (ok < 0) { Py_DECREF(value); return NULL; }
    if (ok) return value;
    Py_DECREF(value);
    Py_RETURN_NONE;
}

static int is_atom(PyObject *v) {
    return PyUnicode_CheckExact(v) || PyLong_CheckExact(v) || PyFloat_CheckExact(v) || PyBool_Check(v);
}

static PyObject *extract_default(PyObject *module, PyObject *doc) {
    if (Observation == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "agent.health._native: configure() was not called");
        return NULL;
    }
    if (!PyDict_CheckExact(doc)) return PyObject_CallOneArg(py_fallback, doc);
    PyObject *event, *duration = Py_None, *model_obj, *model, *label, *request_id, *version, *prediction,
        *features, *service, *host, *usage, *http, *response, *status, *outcome, *log, *level;
    /* Owned references, released at the end. */
    PyObject *label_v = NULL, *prediction_v = NULL, *latency = NULL, *key = NULL, *rid = NULL,
        *in_tokens = NULL, *out_tokens = NULL, *result = NULL;

    PyObject *tags;
    STEP(tags, doc, K_tags);
    if (PyList_CheckExact(tags)) {
        /* the line's own time was unusable (agent.events.TAG_TIMESTAMP_UNUSABLE): Python's _time says so */
        int unusable = PySequence_Contains(tags, S_timestamp_unusable);
        if (unusable < 0) goto error;
        if (unusable) return PyObject_CallOneArg(py_fallback, doc);
    }
    STEP(event, doc, K_event);
    if (PyDict_CheckExact(event)) {
        PyObject *kind;
        STEP(kind, event, K_kind);
        if (kind != Py_None) {
            int other = PyObject_RichCompareBool(kind, S_event, Py_NE);
            if (other < 0) goto error;
            if (other) Py_RETURN_NONE;  /* a metric line, an alert, a pipeline error: not a request */
        }
        STEP(duration, event, K_duration);
    } else {
        event = Py_None;
    }
    if (duration == Py_None) {
        /* A latency the JSON mapping refused stays in extra (_refused_latency): Python decides. */
        PyObject *extra_obj;
        STEP(extra_obj, doc, K_extra);
        if (PyDict_CheckExact(extra_obj) && PyDict_GET_SIZE(extra_obj) > 0) return PyObject_CallOneArg(py_fallback, doc);
    }
    PyObject *operation = Py_None;
    STEP(model_obj, doc, K_model);
    if (PyDict_CheckExact(model_obj)) {
        PyObject *inputs;
        STEP(operation, model_obj, K_operation);
        if (PyUnicode_CheckExact(operation)) {
            int probe = PySet_Contains(not_requests, operation);
            if (probe < 0) goto error;
            if (probe) Py_RETURN_NONE;
        }
        STEP(model, model_obj, K_name);
        if (model == Py_None) {
            PyObject *monitor;
            STEP(monitor, model_obj, K_monitor);
            STEP(model, monitor, K_name);
        }
        STEP(label, model_obj, K_target);
        STEP(request_id, model_obj, K_request_id);
        STEP(version, model_obj, K_version);
        STEP(prediction, model_obj, K_prediction);
        STEP(inputs, model_obj, K_input);
        STEP(features, inputs, K_features);
    } else {
        model = label = request_id = version = prediction = features = Py_None;
    }
    if (model == Py_None) {
        PyObject *gen_ai, *request;
        STEP(gen_ai, doc, K_gen_ai);
        STEP(request, gen_ai, K_request);
        STEP(model, request, K_model);
    }
    if (label == Py_None) {
        PyObject *extra;
        STEP(extra, doc, K_extra);
        STEP(label, extra, K_label);
    }
    if (label != Py_None && (label_v = scalar(label)) == NULL) goto error;
    if (label_v == NULL) { label_v = Py_None; Py_INCREF(label_v); }
    if (PyDict_Check(model) || PyList_Check(model)) model = Py_None;
    if (PyDict_Check(request_id) || PyList_Check(request_id)) request_id = Py_None;
    if (model == Py_None && (label_v == Py_None || request_id == Py_None)) {
        if (prediction != Py_None) {  /* a prediction no model names: Python's extract counts it (no_model) */
            result = PyObject_CallOneArg(py_fallback, doc);
            goto done;  /* (NULL with the error set: the caller sees it) */
        }
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    double when = event_time(doc);
    if (when == -2) goto error;
    if (when == -1) { result = Py_None; Py_INCREF(result); goto done; }
    STEP(service, doc, K_service);
    STEP(service, service, K_name);
    STEP(host, doc, K_host);
    STEP(host, host, K_name);
    key = PyTuple_New(4);
    if (key == NULL) goto error;
    PyObject *parts[4] = {model, version, service, host};
    for (int i = 0; i < 4; i++) {
        PyObject *part = name_of(parts[i]);
        if (part == NULL) goto error;
        PyTuple_SET_ITEM(key, i, part);
    }
    STEP(usage, doc, K_gen_ai);
    STEP(usage, usage, K_usage);
    if (duration == Py_None) {
        latency = Py_None;
        Py_INCREF(latency);
    } else if ((latency = latency_of(duration)) == NULL) {
        goto error;
    }
    if (!(PyDict_Check(features) && PyDict_GET_SIZE(features) > 0)) features = Py_None;
    STEP(http, doc, K_http);
    STEP(response, http, K_response);
    STEP(status, response, K_status_code);
    if (event == Py_None) outcome = Py_None;
    else STEP(outcome, event, K_outcome);
    if (latency == Py_None && prediction == Py_None && request_id == Py_None && features == Py_None &&
        label_v == Py_None && usage == Py_None && status == Py_None && outcome == Py_None) {
        if (PyUnicode_CheckExact(operation)) {  /* an inference request's own line? Python's extract says */
            result = PyObject_CallOneArg(py_fallback, doc);
            goto done;
        }
        result = Py_None;  /* a line that names a model but is no request ("loading model resnet") */
        Py_INCREF(result);
        goto done;
    }
    int error = PyObject_RichCompareBool(outcome, S_failure, Py_EQ);
    if (error < 0) goto error;
    if (!error && PyLong_Check(status) && !PyBool_Check(status)) {
        error = PyObject_RichCompareBool(status, I_500, Py_GE);
        if (error < 0) goto error;
    }
    if (!error) {
        STEP(log, doc, K_log);
        STEP(level, log, K_level);
        error = error_level(level);
        if (error < 0) goto error;
    }
    if (prediction == Py_None) {
        prediction_v = Py_None;
        Py_INCREF(prediction_v);
    } else {
        PyObject *value = NULL;
        if (PyDict_CheckExact(prediction)) {
            value = get(prediction, K_value);
            if (value == NULL && PyErr_Occurred()) goto error;
        }
        if (value != NULL && is_atom(value)) {  /* _scalar's first rule, the usual shape: {"value": 1} */
            prediction_v = value;
            Py_INCREF(prediction_v);
        } else if ((prediction_v = scalar(prediction)) == NULL) {
            goto error;
        }
    }
    if (request_id == Py_None) {
        rid = Py_None;
        Py_INCREF(rid);
    } else if ((rid = name_of(request_id)) == NULL) {
        goto error;
    }
    if (PyDict_Check(usage)) {
        if ((in_tokens = token_count(usage, K_input_tokens)) == NULL) goto error;
        if ((out_tokens = token_count(usage, K_output_tokens)) == NULL) goto error;
    } else {
        in_tokens = Py_None;
        out_tokens = Py_None;
        Py_INCREF(in_tokens);
        Py_INCREF(out_tokens);
    }
    PyObject *when_obj = PyFloat_FromDouble(when);
    if (when_obj == NULL) goto error;
    /* tuple.__new__(Observation, ...): the NamedTuple without its Python-level __new__. */
    result = ((PyTypeObject *)Observation)->tp_alloc((PyTypeObject *)Observation, 10);
    if (result == NULL) { Py_DECREF(when_obj); goto error; }
    PyObject *items[10] = {when_obj, key, rid, latency, error ? Py_True : Py_False, prediction_v,
                           features, label_v, in_tokens, out_tokens};
    for (int i = 0; i < 10; i++) {
        if (i != 0) Py_INCREF(items[i]);  /* when_obj is new already */
        PyTuple_SET_ITEM(result, i, items[i]);
    }
    goto done;
error:
    Py_CLEAR(result);
done:
    Py_XDECREF(label_v);
    Py_XDECREF(prediction_v);
    Py_XDECREF(latency);
    Py_XDECREF(key);
    Py_XDECREF(rid);
    Py_XDECREF(in_tokens);
    Py_XDECREF(out_tokens);
    return result;
}

/* ---- set-up ---------------------------------------------------------------------------------- */

static PyObject *configure(PyObject *module, PyObject *args) {
    PyObject *observation, *fallback, *time, *scalar_f, *name_f, *millis, *probes;
    double scale;
    int zulu;
    if (!PyArg_ParseTuple(args, "OOOOOOO!dp", &observation, &fallback, &time, &scalar_f, &name_f, &millis,
                          &PyFrozenSet_Type, &probes, &scale, &zulu))
        return NULL;
    if (!PyType_Check(observation) || !PyType_IsSubtype((PyTypeObject *)observation, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the observation type must be a tuple subclass");
        return NULL;
    }
    PyObject **slots[] = {&Observation, &py_fallback, &py_time, &py_scalar, &py_name, &py_millis,
                          &not_requests};
    PyObject *values[] = {observation, fallback, time, scalar_f, name_f, millis, probes};
    for (int i = 0; i < 7; i++) {
        Py_INCREF(values[i]);
        Py_XSETREF(*slots[i], values[i]);
    }
    default_scale = scale;
    zulu_ok = zulu;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(Observation, fallback, time, scalar, name, milliseconds, probes, scale, zulu): the Python "
     "helpers the native functions defer to (agent.health.extract calls it at import)."},
    {"extract_default", extract_default, METH_O, "agent.health.extract._extract_default, in C."},
    {"count_values", health_count_values, METH_VARARGS,
     "count_values(values, edges, minimum, maximum, lookup, counts) -> (missing, out_of_range, unseen, rest)"},
    {"add_latencies", health_add_latencies, METH_VARARGS,
     "add_latencies(values, buckets, zero, count, total, min, max, min_value, max_value, log_gamma, min_index, "
     "max_index) -> (zero, count, total, min, max, refused), or None: LatencyHistogram.add of each float"},
    {"count_feature", health_count_feature, METH_VARARGS,
     "count_feature(dicts, name, edges, minimum, maximum, lookup, counts) -> as count_values"},
    {"configure_intake", health_configure_intake, METH_VARARGS,
     "configure_intake(Event, loads, decode_error): what the intake functions use (agent.health.intake calls it "
     "at import)."},
    {"select", health_select, METH_VARARGS,
     "select(events, heads, extractors, make_extractor) -> (found, found_obs), or None: intake.select_python"},
    {"cover", health_cover, METH_VARARGS,
     "cover(covered, pinned, found, found_obs) -> (fresh, fresh_obs), or None: intake.cover_python"},
    {"journal_body", health_journal_body, METH_O, "journal_body(events) -> bytes, or None: "
     "intake.journal_body_python"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "agent.health._native",
                                        "Health's native hot path: see agent/health/_native.c.", -1, methods,
                                        NULL, NULL, NULL, NULL};

static int intern(PyObject **slot, const char *text) {
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__native(void) {
    struct { PyObject **slot; const char *text; } keys[] = {
        {&K_event, "event"}, {&K_kind, "kind"}, {&K_duration, "duration"}, {&K_model, "model"},
        {&K_operation, "operation"}, {&K_name, "name"}, {&K_monitor, "monitor"}, {&K_target, "target"},
        {&K_request_id, "request_id"}, {&K_version, "version"}, {&K_prediction, "prediction"},
        {&K_input, "input"}, {&K_features, "features"}, {&K_gen_ai, "gen_ai"}, {&K_request, "request"},
        {&K_extra, "extra"}, {&K_label, "label"}, {&K_timestamp, "@timestamp"}, {&K_service, "service"},
        {&K_host, "host"}, {&K_usage, "usage"}, {&K_http, "http"}, {&K_response, "response"},
        {&K_status_code, "status_code"}, {&K_outcome, "outcome"}, {&K_log, "log"}, {&K_level, "level"},
        {&K_value, "value"}, {&K_input_tokens, "input_tokens"}, {&K_output_tokens, "output_tokens"},
        {&K_tags, "tags"}, {&S_event, "event"}, {&S_failure, "failure"}, {&S_empty, ""},
        {&S_timestamp_unusable, "timestamp_unusable"},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (intern(keys[i].slot, keys[i].text) < 0) return NULL;
    if ((I_500 = PyLong_FromLong(500)) == NULL || (I_0 = PyLong_FromLong(0)) == NULL) return NULL;
    if ((error_levels = Py_BuildValue("(sss)", "error", "critical", "fatal")) == NULL) return NULL;
    return PyModule_Create(&module_def);
}
