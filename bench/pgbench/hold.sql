-- The write path's hold in PostgreSQL, for pgbench (`boxoffice-bench write-path --postgres-url`):
-- one seat, never asked for by another client while the run lasts, locked, a hold row inserted
-- and the seat marked held, in one transaction committed with synchronous_commit on: the same
-- work as an uncontended Boxoffice hold, without HTTP in front.
-- Set by the bench: :seats (rows of wp_seats), :clients (pgbench -c), :n (0, then one more for
-- each of this client's transactions). Seats go round client by client, like the Boxoffice run's.
\set n :n + 1
\set seat 1 + (:client_id + :n * :clients) % :seats
\set user 1 + :seat % 1000
BEGIN;
SELECT status FROM wp_seats WHERE id = :seat FOR UPDATE;
INSERT INTO wp_holds (seat_id, user_id, expires_at) VALUES (:seat, :user, now() + interval '30 seconds');
UPDATE wp_seats SET status = 1, held_until = now() + interval '30 seconds' WHERE id = :seat;
END;
