import { SetMetadata } from '@nestjs/common';

export const IS_PUBLIC = 'parley:public';

/** Marks a controller or route as reachable without credentials (health, metrics, docs, login). */
export const Public = () => SetMetadata(IS_PUBLIC, true);
