def test_echo_answers(run_helper, free_port):
    import socket

    port = free_port()
    run_helper("echo", "--listen", f"127.0.0.1:{port}")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"ping\n")
        assert conn.makefile("rb").readline() == b"ping\n"
