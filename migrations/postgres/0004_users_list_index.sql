-- 0004_users_list_index: the admin users list pages newest first by
-- (created_at DESC, id DESC). One index in exactly that order serves it
-- without a sort, lets a page skip rows by reading index entries only
-- (the list picks the page's ids first, then reads just those rows), and
-- serves keyset paging (after=<id>) as a plain index range.
-- It replaces the index on created_at alone, which it covers.

CREATE INDEX users_created_at_id_idx ON users (created_at DESC, id DESC);
DROP INDEX users_created_at_idx;
