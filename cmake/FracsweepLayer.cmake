# fracsweep_layer(NAME [DEPS layer...] [PRIVATE_LIBS lib...] [PUBLIC_LIBS lib...]
#                 [EXTRA_SOURCES file...])
# Builds src/NAME/*.cpp into the static library fracsweep_NAME, whose public headers are
# include/fracsweep/NAME/*.hpp. Layering is enforced by include roots: the library's include
# directory is <build>/layer_include/NAME, which holds only fracsweep/NAME (a link to the
# layer's header folder). A target therefore sees the headers of the layers it links and no
# others: including a header of an unlinked layer fails to compile.
#
# Each layer also gets a check executable, layer_check_NAME (built with `all`): it compiles
# every header of the layer alone and links the whole library (every object file, whether
# referenced or not) with only its declared dependencies, so a missing link dependency or a
# header that needs an unlisted one is a build error. tests/CMakeLists.txt runs them.
function(fracsweep_layer name)
  cmake_parse_arguments(L "" "" "DEPS;PRIVATE_LIBS;PUBLIC_LIBS;EXTRA_SOURCES" ${ARGN})
  set(target fracsweep_${name})
  file(GLOB sources CONFIGURE_DEPENDS "${CMAKE_SOURCE_DIR}/src/${name}/*.cpp")
  file(GLOB headers CONFIGURE_DEPENDS "${CMAKE_SOURCE_DIR}/include/fracsweep/${name}/*.hpp")
  add_library(${target} STATIC ${sources} ${L_EXTRA_SOURCES})

  set(root "${CMAKE_BINARY_DIR}/layer_include/${name}")
  file(MAKE_DIRECTORY "${root}/fracsweep")
  if(NOT EXISTS "${root}/fracsweep/${name}")
    file(CREATE_LINK "${CMAKE_SOURCE_DIR}/include/fracsweep/${name}" "${root}/fracsweep/${name}"
         SYMBOLIC)
  endif()
  target_include_directories(${target} PUBLIC "${root}")
  foreach(dep IN LISTS L_DEPS)
    target_link_libraries(${target} PUBLIC fracsweep_${dep})
  endforeach()
  if(L_PRIVATE_LIBS)
    target_link_libraries(${target} PRIVATE ${L_PRIVATE_LIBS})
  endif()
  if(L_PUBLIC_LIBS)
    target_link_libraries(${target} PUBLIC ${L_PUBLIC_LIBS})
  endif()

  # The layer check: one translation unit per header, plus main.
  set(check_sources "")
  foreach(header IN LISTS headers)
    get_filename_component(stem "${header}" NAME_WE)
    set(unit "${CMAKE_BINARY_DIR}/layer_check/${name}/${stem}.cpp")
    file(CONFIGURE OUTPUT "${unit}" CONTENT "#include \"fracsweep/${name}/${stem}.hpp\"  // compiles alone\n")
    list(APPEND check_sources "${unit}")
  endforeach()
  add_executable(layer_check_${name} "${CMAKE_SOURCE_DIR}/cmake/layer_check_main.cpp" ${check_sources})
  target_link_libraries(layer_check_${name} PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,${target}>")
  set_property(GLOBAL APPEND PROPERTY FRACSWEEP_LAYERS ${name})
endfunction()
