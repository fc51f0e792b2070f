-- Which property keys of a file are held in its `rare_properties` MAP(VARCHAR, VARCHAR) column
-- rather than in a column each (warehouse.rare: files of many sparse keys keep their rare keys
-- there), encoded like property_columns.  NULL (files written before): none.
ALTER TABLE event_files ADD COLUMN rare_properties VARCHAR[];
