# The include layering of hashlab, checked on every build (CMakeLists.txt runs
# this before compiling anything) and by ctest:
#
#   cmake -DROOT=<source dir> -P tools/check_layering.cmake
#
# Each folder may include only the folders listed for it (a folder means its
# files and subfolders; a longer match wins). Lower layers never include
# higher ones, and a method folder includes no other method (only the shared
# folders models/backbones and models/common):
#
#   csrc/core                      the core: config, logging, errors, checkpoints
#   csrc/codes, search, eval       codes, search, metrics (no datasets, no methods)
#   csrc/export                    TorchScript emitters (plain fields, no methods)
#   datasets, datasets/readers     data (readers stay torch-free for the fuzzers)
#   trainers                       the training engine (knows no method)
#   models/backbones, models/common  shared networks and shared maths (PCA, ITQ, ...)
#   models/<method>                one method each: its network, loss and Method
#   app                            the train job, run directories, method list
#   tools/cli                      the command line
#   python                         the Python module (python/src: bindings over app)
#
# Includes of the project's own top-level folders are checked ("..." or <...>),
# and relative ones ("../x.h") are refused; tests/, fuzz/ and third-party
# headers are not checked. Exit status 1 and one line per
# offending include (file:line) when the layering is broken.

cmake_minimum_required(VERSION 3.18)

if(NOT ROOT)
  message(FATAL_ERROR "check_layering: pass -DROOT=<hashlab source dir>")
endif()

set(_all_csrc csrc/core csrc/codes csrc/search csrc/eval csrc/export)
set(RULE_csrc/core csrc/core)
set(RULE_csrc/codes csrc/core csrc/codes)
set(RULE_csrc/search csrc/core csrc/codes csrc/search)
set(RULE_csrc/eval csrc/core csrc/codes csrc/search csrc/eval)
set(RULE_csrc/export csrc/core csrc/codes csrc/export)
set(RULE_datasets/readers csrc/core datasets/readers)
set(RULE_datasets csrc/core csrc/codes datasets)
set(RULE_trainers csrc/core csrc/codes csrc/export datasets trainers)
set(_model_base csrc/core csrc/codes csrc/search csrc/export datasets trainers models/backbones
    models/common)
set(RULE_models/backbones ${_model_base})
set(RULE_models/common ${_model_base})
# models/<method>: filled in per folder below (its own folder + backbones).
set(RULE_app ${_all_csrc} datasets trainers models app)
set(RULE_tools/cli ${_all_csrc} datasets trainers models app tools/cli)
set(RULE_python ${_all_csrc} datasets trainers models app python)
set(_folders csrc/core csrc/codes csrc/search csrc/eval csrc/export datasets/readers datasets
    trainers models/backbones models/common models app tools/cli python)
set(_project_tops csrc datasets trainers models app tools python)

# The most specific folder (longest prefix) that `path` lives in; "" if none.
function(_layer_of path out)
  set(best "")
  foreach(f ${_folders})
    string(LENGTH "${f}/" n)
    string(SUBSTRING "${path}/" 0 ${n} head)
    if(head STREQUAL "${f}/")
      string(LENGTH "${best}" bn)
      string(LENGTH "${f}" fn)
      if(fn GREATER bn)
        set(best "${f}")
      endif()
    endif()
  endforeach()
  set(${out} "${best}" PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE _files RELATIVE "${ROOT}"
     "${ROOT}/csrc/*.h" "${ROOT}/csrc/*.cpp" "${ROOT}/csrc/*.cuh" "${ROOT}/csrc/*.cu"
     "${ROOT}/datasets/*.h" "${ROOT}/datasets/*.cpp"
     "${ROOT}/trainers/*.h" "${ROOT}/trainers/*.cpp"
     "${ROOT}/models/*.h" "${ROOT}/models/*.cpp"
     "${ROOT}/app/*.h" "${ROOT}/app/*.cpp"
     "${ROOT}/tools/cli/*.h" "${ROOT}/tools/cli/*.cpp"
     "${ROOT}/python/*.h" "${ROOT}/python/*.cpp")

set(_errors "")
set(_count 0)
foreach(file ${_files})
  get_filename_component(dir "${file}" DIRECTORY)
  _layer_of("${dir}" layer)
  if(layer STREQUAL "")
    continue()
  endif()
  set(allowed ${RULE_${layer}})
  if(layer STREQUAL "models")
    # A method folder: models/<method>/...
    string(REGEX MATCH "^models/[^/]+" own "${dir}")
    set(allowed ${_model_base} ${own})
    set(layer "${own}")
  endif()
  file(STRINGS "${ROOT}/${file}" lines)
  set(lineno 0)
  foreach(line IN LISTS lines)
    math(EXPR lineno "${lineno} + 1")
    if(NOT line MATCHES "^[ \t]*#[ \t]*include[ \t]*[\"<]([^\">]+)[\">]")
      continue()
    endif()
    set(inc "${CMAKE_MATCH_1}")
    if(inc MATCHES "\\.\\./")
      math(EXPR _count "${_count} + 1")
      string(APPEND _errors
             "${file}:${lineno}: includes \"${inc}\": name project headers from the repository root, not with ../\n")
      continue()
    endif()
    string(REGEX MATCH "^[^/]+" top "${inc}")
    if(NOT inc MATCHES "/" OR NOT top IN_LIST _project_tops)
      continue()  # a header beside the file, or not one of ours
    endif()
    set(ok FALSE)
    foreach(a ${allowed})
      string(LENGTH "${a}/" n)
      string(SUBSTRING "${inc}" 0 ${n} head)
      if(head STREQUAL "${a}/")
        set(ok TRUE)
        break()
      endif()
    endforeach()
    if(NOT ok)
      math(EXPR _count "${_count} + 1")
      string(REPLACE ";" ", " allowed_text "${allowed}")
      string(APPEND _errors
             "${file}:${lineno}: includes \"${inc}\", but ${layer} may include only: ${allowed_text}\n")
    endif()
  endforeach()
endforeach()

if(_count GREATER 0)
  message("${_errors}")
  message(FATAL_ERROR "check_layering: ${_count} include(s) break the layering (tools/check_layering.cmake)")
endif()
list(LENGTH _files _n)
message(STATUS "check_layering: ${_n} files follow the layering")
