# The map page in a real browser, and the documented examples, against a live nearestd.
# Both run Debian's /usr/bin/python3 (python3-selenium is a Debian package, so a Python
# from elsewhere on PATH would not see it); scripts/install-deps installs python3-selenium,
# chromium and chromium-driver, and the test fails, rather than skips, without them.
set(NEAREST_TEST_PYTHON /usr/bin/python3)

# browser_map_page: clients/web/index.html served at GET / by nearestd --http, driven in
# headless Chromium; the list after a click must equal the line protocol's NEAREST.
add_test(NAME browser_map_page
         COMMAND ${NEAREST_TEST_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/browser/test_map_page.py
                 --nearestd $<TARGET_FILE:nearestd> --dataset ${NEARESTD_DATASET_DIR}
                 --page ${CMAKE_SOURCE_DIR}/clients/web/index.html)
set_tests_properties(browser_map_page PROPERTIES LABELS browser TIMEOUT 180)

# examples_mobile_backend: examples/mobile_backend.py and .js (quoted in docs/MAPS.md)
# against a live nearestd; their output must be the protocol's answer. Needs Node.js too.
add_test(NAME examples_mobile_backend
         COMMAND ${NEAREST_TEST_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/browser/test_examples.py
                 --nearestd $<TARGET_FILE:nearestd> --dataset ${NEARESTD_DATASET_DIR}
                 --source-dir ${CMAKE_SOURCE_DIR})
set_tests_properties(examples_mobile_backend PROPERTIES LABELS examples TIMEOUT 120)
