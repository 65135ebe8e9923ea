# daemon/ tests: the command layer without sockets, and the real daemon over TCP.
nearest_add_test(test_commands LIBS nearestd_core PkgConfig::JANSSON)
# Answers against models: JSON against the jansson builder it replaced, text
# attributes against printf.
nearest_add_test(test_reply_formats LIBS nearestd_core PkgConfig::JANSSON)
# The catalogue under a refused realloc(), which the test chooses by size.
nearest_add_test(test_catalog_alloc LIBS nearestd_core)
target_link_options(test_catalog_alloc PRIVATE -Wl,--wrap=realloc)
target_compile_definitions(test_commands PRIVATE
    NEARESTD_PROTOCOL_MD="${CMAKE_SOURCE_DIR}/PROTOCOL.md")

nearest_add_test(it_daemon LIBS nearest_it_support nearest_geo PkgConfig::JANSSON PkgConfig::SQLITE3)
target_compile_definitions(it_daemon PRIVATE NEARESTD_BIN="$<TARGET_FILE:nearestd>")
add_dependencies(it_daemon nearestd)

# Connection limits and write security against the real daemon on the bundled dataset.
nearest_add_test(it_limits LIBS nearest_it_support nearestd_core)
target_compile_definitions(it_limits PRIVATE NEARESTD_BIN="$<TARGET_FILE:nearestd>"
                           NEARESTD_DATASET_DIR="${NEARESTD_DATASET_DIR}")
add_dependencies(it_limits nearestd)
if(NEARESTD_TSAN)
    # The 10 MiB line's RSS bound (278 KiB) is for the daemon's own buffers; TSan's
    # shadow memory alone adds 270-380 KiB, so that one assertion is left to build/
    # and build-asan/, where both runs (1 and 3 loops) keep it.
    target_compile_definitions(it_limits PRIVATE
        IT_RSS_UNCHECKED="ThreadSanitizer's shadow memory grows the RSS by 270-380 KiB")
endif()

# Every example of PROTOCOL.md against a live daemon on the bundled dataset.
nearest_add_test(it_protocol_doc LIBS nearest_it_support)
target_compile_definitions(it_protocol_doc PRIVATE NEARESTD_BIN="$<TARGET_FILE:nearestd>"
                           NEARESTD_DATASET_DIR="${NEARESTD_DATASET_DIR}"
                           NEARESTD_PROTOCOL_MD="${CMAKE_SOURCE_DIR}/PROTOCOL.md")
add_dependencies(it_protocol_doc nearestd)

# HTTP responses read back with libhttp-parser, for test_http and it_http.
add_library(nearest_http_support STATIC http_support.c)
target_include_directories(nearest_http_support PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}
                           ${HTTP_PARSER_INCLUDE_DIR})
target_link_libraries(nearest_http_support PUBLIC ${HTTP_PARSER_LIBRARY})

# The HTTP core (routing, statuses, the reader) on the bundled dataset, against
# the line protocol's answers.
nearest_add_test(test_http LIBS nearestd_core nearest_http_support)
target_compile_definitions(test_http PRIVATE NEARESTD_DATASET_DIR="${NEARESTD_DATASET_DIR}")

# nearestd --http over loopback: keep-alive, pipelining, statuses, the page, polygons.
nearest_add_test(it_http LIBS nearest_it_support nearest_http_support PkgConfig::JANSSON
                 PkgConfig::GEOS)
target_compile_definitions(it_http PRIVATE NEARESTD_BIN="$<TARGET_FILE:nearestd>"
                           NEARESTD_DATASET_DIR="${NEARESTD_DATASET_DIR}"
                           NEARESTD_WEB_PAGE="${CMAKE_SOURCE_DIR}/clients/web/index.html")
add_dependencies(it_http nearestd)

# SIGTERM drain, SIGHUP reload and bad databases at start, against the real daemon.
nearest_add_test(it_faults LIBS nearest_it_support nearest_data PkgConfig::SQLITE3)
target_compile_definitions(it_faults PRIVATE NEARESTD_BIN="$<TARGET_FILE:nearestd>"
                           NEARESTD_DATASET_DIR="${NEARESTD_DATASET_DIR}")
add_dependencies(it_faults nearestd)
set_tests_properties(it_faults it_limits PROPERTIES TIMEOUT 120)

# A full disk and a read-only file system, on a small tmpfs the test mounts
# (needs root; otherwise it exits 77 and CTest reports it skipped).
nearest_add_test(it_disk LIBS nearest_it_support PkgConfig::SQLITE3)
target_compile_definitions(it_disk PRIVATE NEARESTD_BIN="$<TARGET_FILE:nearestd>"
                           NEARESTD_DATASET_DIR="${NEARESTD_DATASET_DIR}")
set_tests_properties(it_disk PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 90)
add_dependencies(it_disk nearestd)

# nearest_add_threads_run(<test>): registers <test>_threads, the same program
# run again with NEARESTD_TEST_ARGS="--threads 3", which its_spawn() puts
# before the arguments of every nearestd the test starts (it_support.h). So
# each integration test also holds against a daemon with three event loops,
# where connections land on worker loops as well as the main one. The run
# keeps the test's TIMEOUT and SKIP_RETURN_CODE. scripts/test-all runs the
# *threads* tests again under ThreadSanitizer (NEARESTD_TSAN, build-tsan/).
function(nearest_add_threads_run name)
    add_test(NAME ${name}_threads COMMAND ${name})
    set_tests_properties(${name}_threads PROPERTIES
        ENVIRONMENT "NEARESTD_TEST_ARGS=--threads 3" LABELS threads)
    foreach(prop TIMEOUT SKIP_RETURN_CODE)
        get_test_property(${name} ${prop} value)
        if(value)
            set_tests_properties(${name}_threads PROPERTIES ${prop} ${value})
        endif()
    endforeach()
endfunction()

foreach(t it_daemon it_limits it_protocol_doc it_http it_faults it_disk)
    nearest_add_threads_run(${t})
endforeach()

# Many connections on a nearestd with --threads 4: pipelined reads and
# writes checked against a model per connection, read-your-write across
# loops, STATS totals, durability after SIGKILL, --max-connections, SIGTERM
# drain, SIGHUP reload and the --threads usage errors.
nearest_add_test(it_threads LIBS nearest_it_support Threads::Threads)
target_compile_definitions(it_threads PRIVATE NEARESTD_BIN="$<TARGET_FILE:nearestd>"
                           NEARESTD_DATASET_DIR="${NEARESTD_DATASET_DIR}")
add_dependencies(it_threads nearestd)
set_tests_properties(it_threads PROPERTIES TIMEOUT 120 LABELS threads)
