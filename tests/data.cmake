# data/ tests.
nearest_add_test(test_hours LIBS nearest_hours)
