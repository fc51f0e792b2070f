-- Which property columns of a file hold only integer text: every value 1 to 18 ASCII digits, a
-- non-negative integer below 10^18 and so an exact decimal of the metric; compiled usage
-- queries read such a column without their decimal text check when every file they scan
-- lists it (warehouse.ingest.write.integer_text).  NULL: not known (a file written before).
ALTER TABLE event_files ADD COLUMN integer_columns VARCHAR[];
