-- A product's likers, newest first: RecommendProducts reads the latest few likers of each seed
-- product (an index-only scan of at most that many entries) instead of every like of the seeds.
create index product_likes_product_recent_idx on product_likes (product_id, created_at desc, user_id);
