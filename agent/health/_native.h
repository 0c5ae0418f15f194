/* Health's C module (agent/health/_native.c): what its two source files share.
 *
 * _native.c holds the module, its set-up and extraction; _native_counts.c the
 * counting (feature bins, the latency histogram). The module's docstring, in
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

#endif
