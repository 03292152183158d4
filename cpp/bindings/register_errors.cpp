// Maps the core's exceptions to Python ones. std::invalid_argument -> ValueError and
// std::out_of_range -> IndexError come from pybind11's defaults. Messages may hold file
// paths that are not UTF-8: they are decoded with backslash escapes for such bytes.
#include <Python.h>

#include <cstring>

#include "../core/errors.hpp"
#include "bindings.hpp"

namespace {

py::str message(const char* what) {
    PyObject* text =
        PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "backslashreplace");
    if (text == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(text);
}

}  // namespace

void register_errors(py::module_& m) {
    static py::exception<zarrcrop::ChunkError> chunk_error(m, "ChunkError", PyExc_ValueError);
    chunk_error.doc() = "A chunk's bytes are malformed; the message names the array and chunk key.";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const zarrcrop::ChunkError& e) {
            PyErr_SetObject(chunk_error.ptr(), message(e.what()).ptr());
        } catch (const zarrcrop::ChunkIoError& e) {
            // OSError(errno, message) becomes the matching subclass (IsADirectoryError, ...).
            py::object err = py::reinterpret_steal<py::object>(PyObject_CallFunction(
                PyExc_OSError, "iO", e.error_number(), message(e.what()).ptr()));
            if (!err) throw py::error_already_set();
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(err.ptr())), err.ptr());
        } catch (const std::invalid_argument& e) {
            PyErr_SetObject(PyExc_ValueError, message(e.what()).ptr());
        } catch (const std::out_of_range& e) {
            PyErr_SetObject(PyExc_IndexError, message(e.what()).ptr());
        }
    });
}
