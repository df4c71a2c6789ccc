SELECT lower('OK') AS fine;
SELECT no_such_function(1, 'two');
