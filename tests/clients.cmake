# Tests of the protocol library and the clients: no daemon needed except for it_cli.
nearest_add_test(test_proto LIBS nearest_proto)
