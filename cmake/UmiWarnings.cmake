# umi_warnings(target): the project's warning policy for its own code.
function(umi_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)
  # GCC 12 at -O3 reports -Wrestrict inside libstdc++'s std::string
  # (GCC bug 105329), not in our code.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${target} PRIVATE -Wno-restrict)
  endif()
  if(UMI_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
