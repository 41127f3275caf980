# The PostgreSQL of the pg-ambassador e2e test, run by `sh -c` in the postgres stand-in
# (tests/e2e/base-image.sh standins) as the user postgres, on a read-only root with a
# tmpfs /tmp: a fresh cluster, the user PG_USER with the password PG_PASSWORD (SCRAM)
# owning the database PG_DBNAME, reachable from the network.
set -eu
initdb -D /tmp/data -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
echo 'host all all 0.0.0.0/0 scram-sha-256' >>/tmp/data/pg_hba.conf
echo "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'" | postgres --single -D /tmp/data postgres >/dev/null
echo "CREATE DATABASE $PG_DBNAME OWNER $PG_USER" | postgres --single -D /tmp/data postgres >/dev/null
exec postgres -D /tmp/data -c listen_addresses='*' -c unix_socket_directories=/tmp -c fsync=off
