// Maps the core's exceptions to Python ones. std::invalid_argument -> ValueError and
// std::out_of_range -> IndexError come from pybind11's defaults.
#include <Python.h>

#include "../core/errors.hpp"
#include "bindings.hpp"

void register_errors(py::module_& m) {
    static py::exception<zarrcrop::ChunkError> chunk_error(m, "ChunkError", PyExc_ValueError);
    chunk_error.doc() = "A chunk's bytes are malformed; the message names the array and chunk key.";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const zarrcrop::ChunkError& e) {
            py::set_error(chunk_error, e.what());
        } catch (const zarrcrop::ChunkIoError& e) {
            // OSError(errno, message) becomes the matching subclass (IsADirectoryError, ...).
            py::object err = py::reinterpret_steal<py::object>(
                PyObject_CallFunction(PyExc_OSError, "is", e.error_number(), e.what()));
            if (!err) throw py::error_already_set();
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(err.ptr())), err.ptr());
        }
    });
}
