# umi_warnings(target): the project's warning policy for its own code.
function(umi_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)
  if(UMI_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
