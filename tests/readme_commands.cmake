# Checks (or, with -DUPDATE=ON, rewrites) the command list in README.md between
# the markers <!-- commands:begin --> and <!-- commands:end -->, which must be
# exactly the output of nearestd-commands-md, itself generated from
# daemon/commands.def. Run as:
#   cmake -DGEN=build/bin/nearestd-commands-md -DREADME=README.md [-DUPDATE=ON] \
#         -P tests/readme_commands.cmake
execute_process(COMMAND ${GEN} OUTPUT_VARIABLE table RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${GEN} failed: ${rc}")
endif()
file(READ ${README} text)
set(begin "<!-- commands:begin -->\n")
set(end "<!-- commands:end -->")
string(FIND "${text}" "${begin}" at_begin)
string(FIND "${text}" "${end}" at_end)
if(at_begin EQUAL -1 OR at_end EQUAL -1 OR at_end LESS at_begin)
    message(FATAL_ERROR "${README} has no ${begin} ... ${end} block")
endif()
string(LENGTH "${begin}" begin_len)
math(EXPR body_at "${at_begin} + ${begin_len}")
math(EXPR body_len "${at_end} - ${body_at}")
string(SUBSTRING "${text}" ${body_at} ${body_len} body)
if(body STREQUAL table)
    message(STATUS "README command list matches commands.def")
elseif(UPDATE)
    string(SUBSTRING "${text}" 0 ${body_at} head)
    string(SUBSTRING "${text}" ${at_end} -1 tail)
    file(WRITE ${README} "${head}${table}${tail}")
    message(STATUS "README command list rewritten from commands.def")
else()
    message(FATAL_ERROR "README command list differs from commands.def; regenerate with\n"
        "  cmake -DGEN=${GEN} -DREADME=${README} -DUPDATE=ON -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
