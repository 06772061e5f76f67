# Sets FRACSWEEP_GIT_SHA (and FRACSWEEP_GIT_DIRTY) at configure time; "unknown" outside git.
find_package(Git QUIET)
set(FRACSWEEP_GIT_SHA "unknown")
set(FRACSWEEP_GIT_DIRTY "")
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse HEAD
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR} OUTPUT_VARIABLE _sha
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
  if(_rc EQUAL 0)
    set(FRACSWEEP_GIT_SHA "${_sha}")
    execute_process(COMMAND ${GIT_EXECUTABLE} status --porcelain --untracked-files=no
      WORKING_DIRECTORY ${CMAKE_SOURCE_DIR} OUTPUT_VARIABLE _dirty ERROR_QUIET)
    if(_dirty)
      set(FRACSWEEP_GIT_DIRTY "-dirty")
    endif()
  endif()
endif()
