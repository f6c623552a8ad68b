# umi_add_plugin(<target> SOURCES <file>... [OUTPUT_DIRECTORY <dir>])
#
# Builds a umi plugin: a shared library without the "lib" prefix that
# exports only the UMI_* entry points (hidden visibility plus a linker
# version script, so template instantiations stay private too) and must
# resolve every symbol at link time (-z defs).
set(_UMI_PLUGIN_VERSION_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/umi_plugin.map)

function(umi_add_plugin target)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES" ${ARGN})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE umi::sdk)
  target_link_options(${target} PRIVATE "LINKER:--version-script=${_UMI_PLUGIN_VERSION_SCRIPT}")
  # A plugin needs nothing from the host at link time (the host passes a
  # function table), so an unresolved symbol is a build error, not a
  # refusal at load. Sanitizer runtimes live in the executable: skip there.
  if(NOT UMI_SANITIZE AND NOT UMI_TSAN AND NOT UMI_FUZZ)
    target_link_options(${target} PRIVATE "LINKER:-z,defs")
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${_UMI_PLUGIN_VERSION_SCRIPT})
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  endif()
endfunction()
