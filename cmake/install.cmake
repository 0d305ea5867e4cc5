# `cmake --install`: the two programs, the systemd units (ExecStart= pointing at the
# installed vigild), the example config, the man pages and bash completion, where Debian
# expects them (GNUInstallDirs; unit and completion dirs from pkg-config).
include(GNUInstallDirs)

install(TARGETS vigild RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS vigilctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The control API's module, where vigild looks for it (control_module.hpp).
install(TARGETS vigil-control LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/vigil)

# systemd looks for units in /lib/systemd/system (Debian) and /usr/local/lib/systemd/system;
# a /usr install takes systemd's own dir, another prefix its lib/systemd/system.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  pkg_get_variable(VIGIL_SYSTEMD_DEFAULT systemd systemdsystemunitdir)
  pkg_get_variable(VIGIL_COMPLETION_DEFAULT bash-completion completionsdir)
endif()
if(NOT VIGIL_SYSTEMD_DEFAULT)
  set(VIGIL_SYSTEMD_DEFAULT ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endif()
if(NOT VIGIL_COMPLETION_DEFAULT)
  set(VIGIL_COMPLETION_DEFAULT ${CMAKE_INSTALL_FULL_DATADIR}/bash-completion/completions)
endif()
set(VIGIL_SYSTEMD_UNITDIR ${VIGIL_SYSTEMD_DEFAULT} CACHE PATH "Where the systemd units go")
set(VIGIL_BASH_COMPLETIONDIR ${VIGIL_COMPLETION_DEFAULT} CACHE PATH "Where bash completion goes")

# The units in systemd/ name /usr/local/sbin/vigild (that is what the tests verify); the
# installed ones name the installed binary.
foreach(unit vigild.service vigild@.service)
  file(READ ${PROJECT_SOURCE_DIR}/systemd/${unit} text)
  string(REPLACE "/usr/local/sbin/vigild" "${CMAKE_INSTALL_FULL_SBINDIR}/vigild" text "${text}")
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/systemd/${unit} "${text}")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/systemd/${unit})
endforeach()
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/systemd/vigild.service
              ${CMAKE_CURRENT_BINARY_DIR}/systemd/vigild@.service
        DESTINATION ${VIGIL_SYSTEMD_UNITDIR})

# vigild reads /etc/vigil/vigild.toml by default: the example goes there when sysconfdir is
# /etc (a /usr install, the package); elsewhere it goes with the docs.
if(CMAKE_INSTALL_FULL_SYSCONFDIR STREQUAL "/etc")
  install(FILES config/vigild.toml DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/vigil)
else()
  install(FILES config/vigild.toml DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
endif()
install(FILES README.md docs/replacing-containerd-service.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

install(FILES completion/vigilctl RENAME vigilctl DESTINATION ${VIGIL_BASH_COMPLETIONDIR})

# Man pages, made by pandoc from the operator docs themselves (one source: they cannot
# drift): vigild(8) from docs/man/vigild.8.md + docs/operations.md, vigilctl(8) from
# docs/man/vigilctl.8.md + docs/control-api.md, vigild.toml(5) from
# docs/man/vigild.toml.5.md + docs/configuration.md.
find_program(PANDOC pandoc)
option(VIGIL_MAN "Build the man pages (needs pandoc)" ON)
if(VIGIL_MAN)
  if(NOT PANDOC)
    message(FATAL_ERROR "pandoc not found: install it (apt-get install pandoc) or pass -DVIGIL_MAN=OFF")
  endif()
  set(man_pages vigild:8:operations vigilctl:8:control-api vigild.toml:5:configuration)
  set(man_outputs)
  foreach(entry ${man_pages})
    string(REPLACE ":" ";" parts ${entry})
    list(GET parts 0 name)
    list(GET parts 1 section)
    list(GET parts 2 doc)
    set(out ${CMAKE_CURRENT_BINARY_DIR}/man/${name}.${section})
    add_custom_command(
      OUTPUT ${out}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/man
      COMMAND ${PANDOC} --standalone --from gfm --to man
              --metadata title=${name} --metadata section=${section}
              --metadata header=vigil --metadata footer=vigil\ ${PROJECT_VERSION}
              --output ${out}
              ${PROJECT_SOURCE_DIR}/docs/man/${name}.${section}.md
              ${PROJECT_SOURCE_DIR}/docs/${doc}.md
      DEPENDS ${PROJECT_SOURCE_DIR}/docs/man/${name}.${section}.md
              ${PROJECT_SOURCE_DIR}/docs/${doc}.md
      COMMENT "pandoc ${name}(${section})")
    list(APPEND man_outputs ${out})
    install(FILES ${out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endforeach()
  add_custom_target(man ALL DEPENDS ${man_outputs})
endif()
