import { Controller, Get, Inject, Post, Put } from '@nestjs/common';
import {
  AccessControlRpc,
  CreateRoleBodySchema,
  GrantsSchema,
  IdParamSchema,
  PageQuerySchema,
  pageSchema,
  PutGrantsBodySchema,
  RoleSchema,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { Caller } from '../auth/principal';
import { ApiRoute, ValidBody, ValidParams, ValidQuery, type Valid } from '../http/api-route';
import { paged } from '../http/paging';

@Controller('api/v1/roles')
export class RolesController {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  @Post()
  @ApiRoute({
    summary: 'Create a role (admin)',
    tags: ['roles'],
    body: CreateRoleBodySchema,
    status: 201,
    response: RoleSchema,
    errors: ['CONFLICT'],
    admin: true,
  })
  create(@Caller() actor: Principal, @ValidBody() body: Valid<typeof CreateRoleBodySchema>) {
    return this.rpc.call(AccessControlRpc.createRole, { actor, ...body });
  }

  @Get()
  @ApiRoute({
    summary: 'List roles (admin)',
    tags: ['roles'],
    query: PageQuerySchema,
    status: 200,
    response: pageSchema(RoleSchema),
    admin: true,
    errors: ['INVALID_CURSOR'],
  })
  list(@Caller() actor: Principal, @ValidQuery() query: Valid<typeof PageQuerySchema>) {
    return this.rpc.call(AccessControlRpc.listRoles, { actor, ...paged(query) });
  }

  @Get(':id/grants')
  @ApiRoute({
    summary: "A role's grants (admin)",
    tags: ['roles'],
    params: IdParamSchema,
    status: 200,
    response: GrantsSchema,
    errors: ['NOT_FOUND'],
    admin: true,
  })
  grants(@Caller() actor: Principal, @ValidParams() { id }: Valid<typeof IdParamSchema>) {
    return this.rpc.call(AccessControlRpc.getGrants, { actor, id });
  }

  @Put(':id/grants')
  @ApiRoute({
    summary: 'Replace a role\'s grants (admin); resource_id "*" covers every resource of the type',
    tags: ['roles'],
    params: IdParamSchema,
    body: PutGrantsBodySchema,
    status: 200,
    response: GrantsSchema,
    errors: ['NOT_FOUND'],
    admin: true,
  })
  putGrants(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidBody() { grants }: Valid<typeof PutGrantsBodySchema>,
  ) {
    return this.rpc.call(AccessControlRpc.putGrants, { actor, id, grants });
  }
}
