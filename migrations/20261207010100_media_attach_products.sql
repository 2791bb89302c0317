-- A product's image as an attached media (issue 18, docs/media.md#attaching): released when
-- the product is deleted, so the clean-up collects it.

create function media_release_product() returns trigger language plpgsql as $$
begin
    update media set attached_kind = null, attached_id = null, attached_pos = null
     where attached_kind = 'product' and attached_id = old.id;
    return null;
end $$;

create trigger products_release_media after delete on products
    for each row execute function media_release_product();
