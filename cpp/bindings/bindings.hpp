// The one header every binding file includes: pybind11 plus the per-area registration hooks.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace py = pybind11;

void register_errors(py::module_& m);
void register_reader(py::module_& m);
void register_runtime(py::module_& m);
void register_testing(py::module_& m);
