/* Health's C module (agent/health/_native.c): what its three source files share.
 *
 * _native.c holds the module, its set-up and extraction; _native_counts.c the
 * counting (feature bins, the latency histogram); _native_intake.c what
 * observe does to a batch first (selecting, covering, the journal's bytes). The module's docstring, in
 * _native.c, says what each function does and what it guarantees.
 */
#ifndef MODELSCRIBE_HEALTH_NATIVE_H
#define MODELSCRIBE_HEALTH_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* ``value >= 0`` for an int: 1, 0, or -1 (an error is set). */
int health_nonnegative(PyObject *value);

/* The counting functions the module exports (_native_counts.c). */
PyObject *health_count_values(PyObject *module, PyObject *args);
PyObject *health_count_feature(PyObject *module, PyObject *args);
PyObject *health_add_latencies(PyObject *module, PyObject *args);

/* The intake functions (_native_intake.c). */
PyObject *health_select(PyObject *module, PyObject *args);
PyObject *health_cover(PyObject *module, PyObject *args);
PyObject *health_journal_body(PyObject *module, PyObject *events);
PyObject *health_configure_intake(PyObject *module, PyObject *args);

#endif
