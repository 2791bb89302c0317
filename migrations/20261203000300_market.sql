-- The SNS market (DOMAIN §3 products, issue 16): products sold by their seller, one like per
-- user and product. Like counts are counted from the rows; view counts are flushed from Redis
-- by the platform's view counter (target prefix `product:`).

create table products (
    id          uuid primary key,
    seller_id   uuid not null references users (id) on delete cascade,
    name        text not null,
    description text not null default '',
    price       bigint not null,
    tags        text[] not null default '{}',
    image_url   text not null default '',
    sale_link   text not null default '',
    status      text not null default 'ON_SALE',
    view_count  bigint not null default 0,
    -- Bumped by every edit and status change; the etag clients send back with UpdateProduct.
    version     bigint not null default 1,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    -- Korean substring search over name and description, as for posts (migration
    -- 20261202000100): the distinct character pairs select candidates, ILIKE decides.
    text_bigrams text[] generated always as (community_bigrams(name || ' ' || description)) stored,
    constraint products_status_check check (status in ('ON_SALE', 'SOLD_OUT', 'SUSPENDED')),
    constraint products_price_check check (price >= 0),
    constraint products_name_check check (char_length(name) between 2 and 15)
);
-- The scroll (newest first, ties by id) and a seller's latest.
create index products_created_at_idx on products (created_at desc, id desc);
create index products_seller_id_idx on products (seller_id, created_at desc, id desc);
create index products_tags_idx on products using gin (tags);
create index products_text_bigram_idx on products using gin (text_bigrams);

-- One like per user and product.
create table product_likes (
    product_id uuid not null references products (id) on delete cascade,
    user_id    uuid not null references users (id) on delete cascade,
    created_at timestamptz not null default now(),
    constraint product_likes_pkey primary key (product_id, user_id)
);
-- A user's likes, newest first: the seeds of their recommendations.
create index product_likes_user_id_idx on product_likes (user_id, created_at desc, product_id);
