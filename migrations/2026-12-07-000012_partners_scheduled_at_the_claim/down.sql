-- Not reversible in place: migration 000009's functions copied partner states onto rows, and
-- the rows written since carry none. Restore a backup taken before this migration instead.
DO $$ BEGIN
    RAISE EXCEPTION 'migration 000012 (partners scheduled at the claim) cannot be reverted: restore a backup taken before it';
END $$;
