-- Like counts of products kept on the product row (issue 16, release profile of 2026-12-04):
-- counting them at read time cost a users-row probe per like for every product shown (ListProducts
-- spent 9.4 of its 9.6 ms in that sub-select at 1,000,000 likes). The counter is still exactly the
-- number of like rows of live (not deleted, not suspended) accounts, kept by the database in the
-- transaction that changes either:
--   * a like row inserted / deleted by a live account: +1 / -1;
--   * an account deleted or suspended (deleted_at set): -1 on every product it liked; restored
--     (deleted_at cleared): +1 on each again; removed for good while live: -1 on each.
-- A like and a deletion of the same account cannot interleave: the like's trigger reads the
-- account row FOR SHARE, so it waits for a deletion in progress (and then sees it), and a
-- deletion waits for a like in progress (and then its own statement sees the like). Products
-- are updated in id order so that two deletions never deadlock on each other's products.

alter table products add column like_count bigint not null default 0;

update products p
   set like_count = c.n
  from (select l.product_id, count(*) as n
          from product_likes l join users x on x.id = l.user_id and x.deleted_at is null
         group by l.product_id) c
 where c.product_id = p.id;

alter table products add constraint products_like_count_check check (like_count >= 0);

create function product_likes_count() returns trigger language plpgsql as $$
declare
    liker uuid := case when tg_op = 'INSERT' then new.user_id else old.user_id end;
    product uuid := case when tg_op = 'INSERT' then new.product_id else old.product_id end;
begin
    -- A cascaded delete (the account or the product removed for good) finds no live row here:
    -- the account's likes were taken off by product_likes_owner_count, the product is gone.
    perform 1 from users where id = liker and deleted_at is null for share;
    if found then
        update products set like_count = like_count + (case when tg_op = 'INSERT' then 1 else -1 end)
         where id = product;
    end if;
    return null;
end $$;

create trigger product_likes_count after insert or delete on product_likes
    for each row execute function product_likes_count();

create function product_likes_owner_count() returns trigger language plpgsql as $$
declare
    delta bigint;
    account uuid := old.id;
begin
    if tg_op = 'DELETE' then
        if old.deleted_at is not null then
            return old;
        end if;
        delta := -1;
    elsif old.deleted_at is null and new.deleted_at is not null then
        delta := -1;
    elsif old.deleted_at is not null and new.deleted_at is null then
        delta := 1;
    else
        return new;
    end if;
    with liked as (
        select p.id from products p
         where p.id in (select product_id from product_likes where user_id = account)
         order by p.id
           for no key update)
    update products p set like_count = p.like_count + delta from liked where p.id = liked.id;
    return case when tg_op = 'DELETE' then old else new end;
end $$;

create trigger product_likes_owner_count_update before update of deleted_at on users
    for each row execute function product_likes_owner_count();
create trigger product_likes_owner_count_delete before delete on users
    for each row execute function product_likes_owner_count();
