# Debian packages through CPack (scripts/package builds and checks them):
#   umi-host  the host, umi-submit, the bundled plugins, hardware configs,
#             the Python package, the systemd unit and /etc/umi/hardware.yaml
#             (a conffile: an upgrade keeps the operator's)
#   umi-dev   the plugin SDK: headers, CMake package, pkg-config file
# Install rules name their component; everything not marked `dev` is the
# host's (CMAKE_INSTALL_DEFAULT_COMPONENT_NAME, set before them).
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL host dev)
set(CPACK_PACKAGE_NAME umi)
set(CPACK_PACKAGE_VENDOR "the umi developers")
set(CPACK_PACKAGE_CONTACT "umi developers <umi@example.org>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://localhost/umi")

set(CPACK_DEBIAN_HOST_PACKAGE_NAME umi-host)
set(CPACK_DEBIAN_HOST_PACKAGE_SECTION net)
set(CPACK_DEBIAN_HOST_PACKAGE_SHLIBDEPS ON)
# The plugins are private libraries, found in the package's own tree.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_BINARY_DIR}/${UMI_PLUGIN_INSTALL_DIR})
set(CPACK_DEBIAN_HOST_PACKAGE_DEPENDS "python3, python3-msgpack")
set(CPACK_DEBIAN_HOST_PACKAGE_RECOMMENDS "python3-zmq, python3-redis")
set(CPACK_DEBIAN_HOST_PACKAGE_SUGGESTS "redis-server")
# CPack indents each line of a description and turns an empty one into " .".
set(CPACK_DEBIAN_HOST_DESCRIPTION "resource-aware plugin host for media pipelines
umi-host takes task messages (msgpack) over ZeroMQ or Redis Streams, runs
media plugins (shared libraries, or Python) on a pool that accounts CPU
cores and threads, GPUs and memory exactly, and answers each task once.

This package holds the host, umi-submit, the bundled plugins (probe,
thumbnail, scenes, checksum), the Python client and worker, and a systemd
unit reading /etc/umi/hardware.yaml.")
set(CPACK_DEBIAN_HOST_PACKAGE_CONTROL_EXTRA ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME umi-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libmsgpack-cxx-dev")
set(CPACK_DEBIAN_DEV_PACKAGE_RECOMMENDS "cmake, pkg-config, cppzmq-dev, libhiredis-dev")
set(CPACK_DEBIAN_DEV_DESCRIPTION "plugin SDK for umi-host
Headers, a CMake package (find_package(umi), umi_add_plugin) and a
pkg-config file for writing umi-host plugins in C++ against its versioned
C ABI, and the producer clients for ZeroMQ and Redis Streams.")

# What lintian asks of every Debian package: a copyright file and a
# changelog under /usr/share/doc/<package>.
foreach(component host dev)
  string(TOUPPER ${component} upper)
  install(FILES packaging/debian/copyright DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/umi-${component}
          COMPONENT ${component})
  set(changelog ${CMAKE_BINARY_DIR}/packaging/umi-${component}/changelog.Debian.gz)
  file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/packaging/umi-${component})
  execute_process(COMMAND gzip -9 -n -c ${PROJECT_SOURCE_DIR}/packaging/debian/changelog
                  OUTPUT_FILE ${changelog})
  install(FILES ${changelog} DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/umi-${component} COMPONENT ${component})
endforeach()

# Where lintian's view is not this package's (each file says why).
install(FILES packaging/debian/umi-host.lintian-overrides DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides
        RENAME umi-host COMPONENT host)
install(FILES packaging/debian/umi-dev.lintian-overrides DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides
        RENAME umi-dev COMPONENT dev)

# Manual pages from each program's --help, where help2man is installed
# (scripts/package installs it).
find_program(UMI_HELP2MAN help2man)
if(UMI_HELP2MAN AND NOT UMI_SANITIZE AND NOT UMI_TSAN)  # a sanitizer would speak up at exit
  set(pages)
  set(umi-host_summary "resource-aware plugin host for media pipelines")
  set(umi-submit_summary "send tasks to umi hosts and print their results")
  foreach(program umi-host umi-submit)
    set(page ${CMAKE_BINARY_DIR}/packaging/man/${program}.1.gz)
    add_custom_command(OUTPUT ${page}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/packaging/man
      COMMAND ${UMI_HELP2MAN} --no-info --version-string=${PROJECT_VERSION} --name=${${program}_summary}
              --output=${CMAKE_BINARY_DIR}/packaging/man/${program}.1
              $<TARGET_FILE:${program}>
      COMMAND gzip -9 -n -f ${CMAKE_BINARY_DIR}/packaging/man/${program}.1
      DEPENDS ${program} VERBATIM)
    list(APPEND pages ${page})
  endforeach()
  add_custom_target(umi_manual_pages ALL DEPENDS ${pages})
  install(FILES ${pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT host)
endif()

include(CPack)
