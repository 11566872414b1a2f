
use builtin;
use str;

set edit:completion:arg-completer[cdcctl] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'cdcctl'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'cdcctl'= {
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand setup-source 'Check and prepare Postgres for CDC: wal_level, slots, privileges, publication, slot'
            cand generate-data 'Fill Postgres with realistic rows and drive a stream of changes'
            cand config 'Show every effective setting and where it came from (secrets as ****)'
            cand completions 'Print a shell completion script to stdout'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cdcctl;setup-source'= {
            cand --tables 'Tables to capture, comma separated: `users,commerce.products,"My Table"`'
            cand --schemas 'Capture every table of these schemas, comma separated'
            cand --publication 'Publication to create or extend'
            cand --slot 'Logical replication slot (pgoutput) to create; none unless given'
            cand --replica-identity 'Set the replica identity of every chosen table (unchanged unless given)'
            cand --postgres-url 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --demo 'Create the demo schema (the seed pipelines'' four tables) and use its tables'
            cand --apply-system 'Also run `ALTER SYSTEM` for wal_level, max_replication_slots and max_wal_senders'
            cand --dry-run 'Print the SQL that would run, and change nothing'
            cand --teardown 'Drop the slot (`--slot`) and the publication instead, reporting the WAL the slot retained'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;generate-data'= {
            cand --table 'Tables to fill instead of the demo tables: `users,shop.orders` (repeatable)'
            cand --rows 'Bulk-load N rows into each table with COPY, parents before children'
            cand --events 'Then make N changes (inserts, updates, deletes as `--mix` says)'
            cand --duration 'Make changes for this long instead of a count: `30s`, `5m`, `1h`'
            cand --rate 'Changes per second; 0 makes them as fast as possible'
            cand --mix 'Relative weights of inserts, updates and deletes among the changes'
            cand --tx-size 'Changes per transaction'
            cand --seed 'Seed of the generator: the same seed on the same starting data gives the same rows'
            cand --postgres-url 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --large-text 'Put values over 8 KB in one text column per table, so that TOAST is exercised'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;config'= {
            cand --postgres-url 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`'
            cand --brokers 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`'
            cand --topic-prefix 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`'
            cand --connect-url 'Kafka Connect REST URL'
            cand --snowflake-account 'Snowflake account identifier (`orgname-account`)'
            cand --snowflake-url 'Snowflake endpoint URL, overriding the one derived from the account'
            cand --duckdb-path 'DuckDB database file'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;completions'= {
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;help'= {
            cand setup-source 'Check and prepare Postgres for CDC: wal_level, slots, privileges, publication, slot'
            cand generate-data 'Fill Postgres with realistic rows and drive a stream of changes'
            cand config 'Show every effective setting and where it came from (secrets as ****)'
            cand completions 'Print a shell completion script to stdout'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cdcctl;help;setup-source'= {
        }
        &'cdcctl;help;generate-data'= {
        }
        &'cdcctl;help;config'= {
        }
        &'cdcctl;help;completions'= {
        }
        &'cdcctl;help;help'= {
        }
    ]
    $completions[$command]
}
